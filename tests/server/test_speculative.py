"""Speculative decoding with a draft model (``ovserve serve MODEL --draft-model PATH``, OVMS's ``draft_models_path``), on
the real engine. No smaller model than the default is at hand: the default model is its own draft (its .gguf, which the
draft runs as its OpenVINO IR), so the plumbing is tested, not a speed-up."""

import subprocess
import sys

import httpx
import pytest

from tests.conftest import MODEL_NAME, free_port, start_server
from tests.server.test_bad_input import assert_openai_error

pytestmark = pytest.mark.slow

STORY = [{"role": "user", "content": "Tell me a story about a dragon."}]


@pytest.fixture(scope="module")
def drafted(default_model, tmp_path_factory):
    server = start_server(["--model", str(default_model), "--model-name", MODEL_NAME, "--draft-model",
                           str(default_model), "--draft-device", "CPU"], tmp_path_factory.mktemp("draft"))
    yield server
    server.stop()


def steps_and_tokens(server, **fields):
    """A greedy streamed answer: (completion tokens, engine steps it took, its text)."""
    steps_before = server.metric("ovserve_engine_steps_total")
    chunks = list(server.openai().chat.completions.create(
        model=MODEL_NAME, messages=STORY, max_tokens=48, temperature=0, stream=True,
        stream_options={"include_usage": True}, **fields))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return chunks[-1].usage.completion_tokens, server.metric("ovserve_engine_steps_total") - steps_before, text


@pytest.mark.parametrize("fields", [{}, {"extra_body": {"num_assistant_tokens": 8}},
                                    {"extra_body": {"assistant_confidence_threshold": 0.2}}])
def test_the_draft_proposes_several_tokens_that_one_step_accepts(drafted, fields):
    tokens, steps, text = steps_and_tokens(drafted, **fields)
    assert text
    # one token a step without a draft; the model is its own draft, so most proposals are accepted
    assert tokens > steps, (tokens, steps)


def test_what_a_request_may_ask_for_works_with_a_draft(drafted):
    client = drafted.openai()
    several = client.chat.completions.create(model=MODEL_NAME, messages=STORY, max_tokens=12, n=4, seed=1)
    assert len(several.choices) == 4 and all(choice.message.content for choice in several.choices)
    greedy = client.chat.completions.create(model=MODEL_NAME, messages=STORY, max_tokens=12, temperature=0,
                                            logprobs=True, top_logprobs=2)
    assert len(greedy.choices[0].logprobs.content) == greedy.usage.completion_tokens
    assert all(entry.logprob <= 0 and len(entry.top_logprobs) == 2 for entry in greedy.choices[0].logprobs.content)
    stopped = client.completions.create(model=MODEL_NAME, prompt="Count: one, two, three, four,", max_tokens=32,
                                        temperature=0.8, seed=3, stop=[","])
    assert "," not in stopped.choices[0].text
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"],
              "additionalProperties": False}
    shaped = client.chat.completions.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": "Name a dragon, as JSON."}], max_tokens=40,
        response_format={"type": "json_schema", "json_schema": {"name": "dragon", "schema": schema}})
    assert shaped.choices[0].message.content.startswith("{")
    assert drafted.metric("ovserve_engine_starts_total") == 1


@pytest.mark.parametrize(("fields", "param"), [
    ({"num_assistant_tokens": 3, "assistant_confidence_threshold": 0.5}, "num_assistant_tokens"),
    ({"assistant_confidence_threshold": 0}, "assistant_confidence_threshold"),  # would mean neither is set
    ({"num_assistant_tokens": 11}, "num_assistant_tokens"),
    ({"max_ngram_size": 3}, "max_ngram_size"),  # prompt lookup's
    ({"logprobs": True, "temperature": 0.8}, "logprobs"),  # the engine's sampled log-probabilities went above 0
])
def test_speculative_settings_the_engine_cannot_take_are_refused_by_name(drafted, fields, param):
    response = httpx.post(f"{drafted.base_url}/v3/chat/completions", timeout=30,
                          json={"model": MODEL_NAME, "messages": STORY, "max_tokens": 8, **fields})
    assert_openai_error(response, 400, param)
    assert drafted.metric("ovserve_engine_starts_total") == 1


@pytest.mark.parametrize("param", ["assistant_confidence_threshold", "num_assistant_tokens"])
def test_without_a_draft_model_its_settings_are_refused_not_ignored(server, param):
    response = httpx.post(f"{server.base_url}/v3/chat/completions", timeout=30,
                          json={"model": MODEL_NAME, "messages": STORY, "max_tokens": 4, param: 1})
    assert_openai_error(response, 400, param)


@pytest.mark.parametrize(("flags", "words"), [
    (["--batch-invariant"], "batch_invariant cannot be combined with draft_models_path"),
    (["--plugin_config", '{"prompt_lookup": true}'], "the engine takes one of them"),
    (["--enable-prefix-caching", "true"], "enable_prefix_caching cannot be combined with draft_models_path"),
    (["--pipeline-type", "LM"], "draft_models_path needs the continuous-batching engine"),
])
def test_a_draft_with_what_it_cannot_serve_stops_the_start_naming_both(default_model, flags, words):
    result = subprocess.run([sys.executable, "-m", "ovserve.cli", "serve", "--model", str(default_model),
                             "--port", str(free_port()), "--draft-model", str(default_model), *flags],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert words in result.stderr


def test_requests_cancelled_partway_leave_the_engine_serving(drafted):
    """Clients that go away mid-answer cancel their engine requests. With the prefix cache on, 5 of 15 such rounds
    failed an engine step (GenAI 2026.4): a draft is served without it."""
    import asyncio

    async def cut_short(client, number):
        body = {"model": MODEL_NAME, "messages": STORY, "max_tokens": 40, "temperature": 0.7, "seed": number,
                "stream": True}
        async with client.stream("POST", f"{drafted.base_url}/v3/chat/completions", json=body) as response:
            chunks = 0
            async for line in response.aiter_lines():
                chunks += line.startswith("data:")
                if chunks >= 2 + number % 4:
                    return  # closes the stream: the server cancels the request

    async def rounds():
        async with httpx.AsyncClient(timeout=60) as client:
            for round_number in range(5):
                await asyncio.gather(*(cut_short(client, round_number * 4 + k) for k in range(4)))

    asyncio.run(rounds())
    answer = drafted.openai().chat.completions.create(model=MODEL_NAME, messages=STORY, max_tokens=8)
    assert answer.choices[0].message.content
    assert drafted.metric("ovserve_engine_starts_total") == 1
