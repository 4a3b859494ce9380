"""Prompt lookup decoding, as OVMS turns it on (``plugin_config: {"prompt_lookup": true}``) and with its request
settings (``num_assistant_tokens``, ``max_ngram_size``), on the real engine."""

import json
import subprocess
import sys

import httpx
import pytest

from tests.conftest import MODEL_NAME, free_port, start_server
from tests.server.test_bad_input import assert_openai_error

pytestmark = pytest.mark.slow

#: A text the answer copies: prompt lookup finds its next tokens in the prompt.
PASSAGE = "The quick brown fox jumps over the lazy dog. " * 3
COPY = [{"role": "user", "content": f"Repeat this exactly:\n{PASSAGE}"}]


@pytest.fixture(scope="module")
def looked_up(default_model, tmp_path_factory):
    server = start_server(["--model", str(default_model), "--model-name", MODEL_NAME, "--plugin_config",
                           json.dumps({"prompt_lookup": True})], tmp_path_factory.mktemp("prompt-lookup"))
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
    steps_before = looked_up.metric("ovserve_engine_steps")
    text, tokens, chunks = stream_copy(looked_up)
    steps = looked_up.metric("ovserve_engine_steps") - steps_before
    assert "quick brown fox" in text
    # one token a step without prompt lookup (and one more step for the prompt); copying goes faster
    assert tokens > steps, (tokens, steps)
    assert chunks < tokens  # a step's tokens reach the client together


def test_a_request_sets_its_own_prompt_lookup_settings(looked_up):
    steps_before = looked_up.metric("ovserve_engine_steps")
    text, tokens, _ = stream_copy(looked_up, extra_body={"num_assistant_tokens": 1, "max_ngram_size": 2})
    steps = looked_up.metric("ovserve_engine_steps") - steps_before
    assert "quick brown fox" in text
    assert tokens <= 2 * steps, (tokens, steps)  # one proposed token a step, and the one the model adds


def test_logprobs_come_for_every_token_of_a_step(looked_up, server):
    def logprobs(target):
        answer = target.openai().chat.completions.create(model=MODEL_NAME, messages=COPY, max_tokens=24,
                                                         temperature=0, logprobs=True)
        assert len(answer.choices[0].logprobs.content) == answer.usage.completion_tokens
        return [(entry.token, entry.logprob) for entry in answer.choices[0].logprobs.content]

    looked, plain = logprobs(looked_up), logprobs(server)
    same = [(a, b) for a, b in zip(looked, plain, strict=False) if a[0] == b[0]]
    assert len(same) >= 8
    # the accepted proposals carry the model's own log-probabilities (checked in a multi-token pass, so not to
    # the last digit), not a placeholder
    assert all(abs(a[1] - b[1]) < 0.25 for a, b in same), same


def test_min_tokens_is_refused_where_the_engine_would_not_hold_it(looked_up):
    response = httpx.post(f"{looked_up.base_url}/v3/chat/completions", timeout=30,
                          json={"model": MODEL_NAME, "messages": COPY, "max_tokens": 8, "min_tokens": 4})
    assert_openai_error(response, 400, "min_tokens")


@pytest.mark.parametrize(("fields", "param"), [({"num_assistant_tokens": 0}, "num_assistant_tokens"),
                                               ({"max_ngram_size": "x"}, "max_ngram_size")])
def test_bad_prompt_lookup_settings_are_refused_by_name(looked_up, fields, param):
    response = httpx.post(f"{looked_up.base_url}/v3/chat/completions", timeout=30,
                          json={"model": MODEL_NAME, "messages": COPY, "max_tokens": 4, **fields})
    assert_openai_error(response, 400, param)


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
