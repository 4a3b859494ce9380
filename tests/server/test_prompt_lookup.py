"""Prompt lookup decoding, as OVMS turns it on (``plugin_config: {"prompt_lookup": true}``) and with its request
settings (``num_assistant_tokens``, ``max_ngram_size``), on the real engine."""

import json
import subprocess
import sys
import time

import httpx
import pytest

from ovserve.engine.cpu import BATCH_INVARIANT, CPUKind
from tests.conftest import MODEL_NAME, free_port, start_server
from tests.server.test_bad_input import assert_openai_error

pytestmark = pytest.mark.slow

#: A text the answer copies: prompt lookup finds its next tokens in the prompt.
PASSAGE = "The quick brown fox jumps over the lazy dog. " * 3
COPY = [{"role": "user", "content": f"Repeat this exactly:\n{PASSAGE}"}]


#: The scoring pass's settings (f32, no dynamic quantization, an f32 KV cache), the same on every CPU kind: the
#: engine's log-probabilities can be checked against the scorer's.
F32 = BATCH_INVARIANT[CPUKind.AVX2]


@pytest.fixture(scope="module")
def looked_up(default_model, tmp_path_factory):
    server = start_server(["--model", str(default_model), "--model-name", MODEL_NAME, "--plugin_config",
                           json.dumps({"prompt_lookup": True, **F32})], tmp_path_factory.mktemp("prompt-lookup"))
    yield server
    server.stop()


def stream_copy(server, **fields):
    """A greedy streamed copy: (the text, completion tokens, content chunks)."""
    chunks = list(server.openai().chat.completions.create(
        model=MODEL_NAME, messages=COPY, max_tokens=48, temperature=0, stream=True,
        stream_options={"include_usage": True}, **fields))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    content_chunks = sum(1 for c in chunks if c.choices and c.choices[0].delta.content)
    return text, chunks[-1].usage.completion_tokens, content_chunks


def test_the_engine_accepts_several_proposed_tokens_per_step(looked_up):
    steps_before = looked_up.metric("ovserve_engine_steps_total")
    text, tokens, chunks = stream_copy(looked_up)
    steps = looked_up.metric("ovserve_engine_steps_total") - steps_before
    assert "quick brown fox" in text
    # one token a step without prompt lookup (and one more step for the prompt); copying goes faster
    assert tokens > steps, (tokens, steps)
    assert chunks < tokens  # a step's tokens reach the client together


def test_a_request_sets_its_own_prompt_lookup_settings(looked_up):
    steps_before = looked_up.metric("ovserve_engine_steps_total")
    text, tokens, _ = stream_copy(looked_up, extra_body={"num_assistant_tokens": 1, "max_ngram_size": 2})
    steps = looked_up.metric("ovserve_engine_steps_total") - steps_before
    assert "quick brown fox" in text
    assert tokens <= 2 * steps, (tokens, steps)  # one proposed token a step, and the one the model adds


def test_each_accepted_token_carries_the_models_own_logprob(looked_up):
    prompt = httpx.post(f"{looked_up.base_url}/v3/tokenize", json={"model": MODEL_NAME, "messages": COPY},
                        timeout=30).json()["tokens"]
    steps_before = looked_up.metric("ovserve_engine_steps_total")
    answer = looked_up.openai().completions.create(
        model=MODEL_NAME, prompt=prompt, max_tokens=24, temperature=0, logprobs=0,
        extra_body={"return_tokens_as_token_ids": True})
    steps = looked_up.metric("ovserve_engine_steps_total") - steps_before
    logprobs = answer.choices[0].logprobs
    generated = token_ids(logprobs.tokens)
    assert len(generated) == answer.usage.completion_tokens > steps  # several tokens came from one step

    # The same tokens, teacher-forced through the model in one pass (echo scores the prompt it is given)
    scored = looked_up.openai(strict=False).completions.create(  # the first token's logprob is null
        model=MODEL_NAME, prompt=prompt + generated, max_tokens=0, echo=True, logprobs=0,
        extra_body={"return_tokens_as_token_ids": True}).choices[0].logprobs
    assert token_ids(scored.tokens[-len(generated):]) == generated
    # Both passes compute in f32 without dynamic quantization (the server runs with those settings, as the
    # scoring pass always does), so on every CPU they differ by summation order only: far less than 0.05.
    # A placeholder, or a log-probability reported for the wrong token of a step, is further off.
    reported, teacher_forced = logprobs.token_logprobs, scored.token_logprobs[-len(generated):]
    assert all(abs(a - b) < 0.05 for a, b in zip(reported, teacher_forced, strict=True)), (
        list(zip(reported, teacher_forced, strict=True)))


def token_ids(names: list[str]) -> list[int]:
    """Token ids from ``return_tokens_as_token_ids`` names (``token_id:N``)."""
    assert all(name.startswith("token_id:") for name in names), names
    return [int(name.removeprefix("token_id:")) for name in names]


def test_min_tokens_is_refused_where_the_engine_would_not_hold_it(looked_up):
    response = httpx.post(f"{looked_up.base_url}/v3/chat/completions", timeout=30,
                          json={"model": MODEL_NAME, "messages": COPY, "max_tokens": 8, "min_tokens": 4})
    assert_openai_error(response, 400, "min_tokens")


@pytest.mark.parametrize(("fields", "param"), [({"num_assistant_tokens": 0}, "num_assistant_tokens"),
                                               ({"max_ngram_size": "x"}, "max_ngram_size"),
                                               # failed an engine step, which restarted the engine
                                               ({"num_assistant_tokens": 64, "n": 20}, "num_assistant_tokens")])
def test_bad_prompt_lookup_settings_are_refused_by_name(looked_up, fields, param):
    response = httpx.post(f"{looked_up.base_url}/v3/chat/completions", timeout=30,
                          json={"model": MODEL_NAME, "messages": COPY, "max_tokens": 64, **fields})
    assert_openai_error(response, 400, param)
    assert looked_up.metric("ovserve_engine_starts_total") == 1


@pytest.mark.parametrize("param", ["num_assistant_tokens", "max_ngram_size"])
def test_without_prompt_lookup_its_settings_are_refused_not_ignored(server, param):
    response = httpx.post(f"{server.base_url}/v3/completions", timeout=30,
                          json={"model": MODEL_NAME, "prompt": "hi", "max_tokens": 4, param: 3})
    assert_openai_error(response, 400, param)
    assert "prompt_lookup" in response.json()["error"]["message"]


def test_a_prompt_lookup_that_is_not_a_bool_stops_the_start_naming_it(default_model):
    result = subprocess.run([sys.executable, "-m", "ovserve.cli", "serve", "--model", str(default_model),
                             "--port", str(free_port()), "--plugin_config", '{"prompt_lookup": "yes"}'],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert "'prompt_lookup' must be true or false (got 'yes')" in result.stderr


@pytest.mark.parametrize("stream", [False, True])
def test_a_stop_string_ends_the_answer_and_the_engine_s_work_on_it(looked_up, stream):
    """The detokenizer alone cuts at stop strings here (the engine's own check failed its steps with prompt
    lookup); the answer ends there, and so does the engine's work on it."""
    steps_before = looked_up.metric("ovserve_engine_steps_total")
    answer = looked_up.openai().chat.completions.create(model=MODEL_NAME, messages=COPY, max_tokens=2000,
                                                        temperature=0, stop=["lazy"], stream=stream,
                                                        extra_body={"ignore_eos": True})
    if stream:
        chunks = list(answer)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    else:
        text, finish = answer.choices[0].message.content, [answer.choices[0].finish_reason]
    assert "quick brown fox" in text and "lazy" not in text and finish == ["stop"]
    for _ in range(50):  # the engine lets the request go within a few steps of the answer's end
        if looked_up.metric("ovserve_engine_handles") == 0:
            break
        time.sleep(0.1)
    assert looked_up.metric("ovserve_engine_handles") == 0
    assert looked_up.metric("ovserve_engine_steps_total") - steps_before < 100  # not 2,000 tokens' worth
