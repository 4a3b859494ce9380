"""``ovserve serve --batch-invariant``: a request's output is the same alone as batched with others.

Checked on the real model over HTTP, on whatever CPU runs the suite: 16 concurrent streams against the same
requests one at a time, greedy and with seeded sampling. The server has no prefix cache and takes every prompt
whole in one step, so that the batch is the only difference: a prefix-cache hit or a prompt split across steps
computes the prompt in other shapes, which the mode does not promise to hold.
"""

import asyncio

import openai
import pytest

from tests.conftest import MODEL_NAME, start_server
from tests.server.streams import QUESTIONS, Streamed, stream_one

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def invariant_server(default_model, tmp_path_factory):
    server = start_server(["--model", str(default_model), "--model-name", MODEL_NAME, "--batch-invariant",
                           "--enable-prefix-caching", "false", "--max-num-batched-tokens", "4096"],
                          tmp_path_factory.mktemp("batch-invariant"))
    yield server
    server.stop()


@pytest.fixture
def client(invariant_server):
    return openai.AsyncOpenAI(base_url=f"{invariant_server.base_url}/v3", api_key="unused", max_retries=0)


async def one_at_a_time(client, questions, **fields) -> list[Streamed]:
    return [await stream_one(client, q, **fields) for q in questions]


def texts(streams: list[Streamed]) -> list[str]:
    return [s.text for s in streams]


def test_the_startup_log_and_metrics_say_the_mode_is_on(invariant_server, server):
    log = "".join(invariant_server.lines)
    assert "batch-invariant mode on" in log
    assert '"INFERENCE_PRECISION_HINT": "f32"' in log and '"DYNAMIC_QUANTIZATION_GROUP_SIZE": "0"' in log
    assert invariant_server.metric("ovserve_engine_batch_invariant") == 1
    assert server.metric("ovserve_engine_batch_invariant") == 0
    assert "batch-invariant mode off" in "".join(server.lines)


async def test_sixteen_concurrent_streams_answer_exactly_as_one_at_a_time(client):
    alone = await one_at_a_time(client, QUESTIONS)
    together = await asyncio.gather(*(stream_one(client, q) for q in QUESTIONS))
    assert texts(together) == texts(alone)
    # They were batched: every stream had begun before any ended.
    assert max(s.first_content for s in together) < min(s.end for s in together)


async def test_seeded_sampling_is_the_same_alone_and_batched(client):
    fields = {"temperature": 0.8, "seed": 11}
    alone = await one_at_a_time(client, QUESTIONS[:8], **fields)
    together = await asyncio.gather(*(stream_one(client, q, **fields) for q in QUESTIONS[:8]))
    assert texts(together) == texts(alone)


async def test_best_of_returns_the_candidates_with_the_best_mean_logprob(client):
    """best_of answers are the n of its candidates (seeds seed, seed + 1, ...) with the highest log-probability
    per token; n alone returns all of them, so the two can be compared exactly in this mode."""
    fields = {"model": MODEL_NAME, "prompt": "Once upon a time", "max_tokens": 10, "temperature": 1.0, "seed": 3}
    candidates = await client.completions.create(n=4, logprobs=0, **fields)
    mean = {c.text: sum(c.logprobs.token_logprobs) / len(c.logprobs.token_logprobs) for c in candidates.choices}
    assert len(mean) > 2  # sampled apart
    best = await client.completions.create(n=2, extra_body={"best_of": 4}, **fields)
    assert [c.text for c in best.choices] == sorted(mean, key=mean.__getitem__, reverse=True)[:2]
    assert [c.index for c in best.choices] == [0, 1] and best.choices[0].logprobs is None
