"""Many clients at once: requests are batched together into shared engine steps.

In the default mode only what holds on every CPU is asserted: the engine runs the streams in shared
steps (far fewer steps than one at a time), and every answer is complete, with the right finish
reason and usage. The exact greedy text of a batched request can differ from the same request alone
on CPUs whose kernels round differently by batch (AVX-512 BF16): equality is the promise of
``--batch-invariant`` (tests/server/test_batch_invariant.py), not of the default mode.
"""

import asyncio
import re
import time

import openai
import pytest

from tests.server.streams import MAX_TOKENS, QUESTIONS, stream_one

pytestmark = pytest.mark.slow


def is_readable(text: str) -> bool:
    """Text made of whole UTF-8 characters, with letters or digits in it (not a byte soup or blanks)."""
    return "\ufffd" not in text and re.search(r"\w", text) is not None


async def test_sixteen_streams_share_engine_steps_and_each_answer_is_complete(server):
    steps_before = server.metric("ovserve_engine_steps_total")
    started = time.monotonic()
    client = openai.AsyncOpenAI(base_url=f"{server.base_url}/v3", api_key="unused", max_retries=0)
    one_at_a_time = [await stream_one(client, q) for q in QUESTIONS]
    sequential_seconds = time.monotonic() - started
    sequential_steps = server.metric("ovserve_engine_steps_total") - steps_before

    steps_before = server.metric("ovserve_engine_steps_total")
    started = time.monotonic()
    together = await asyncio.gather(*(stream_one(client, q) for q in QUESTIONS))
    concurrent_seconds = time.monotonic() - started
    concurrent_steps = server.metric("ovserve_engine_steps_total") - steps_before

    # Batched: the 16 streams took about the steps of one (48 tokens each), not 16 times as many.
    assert sequential_steps >= len(QUESTIONS) * MAX_TOKENS
    assert concurrent_steps < sequential_steps / 4, (concurrent_steps, sequential_steps)
    # ... and every stream had begun before any stream ended.
    assert max(s.first_content for s in together) < min(s.end for s in together)
    for alone, batched in zip(one_at_a_time, together, strict=True):
        assert batched.finish_reason == alone.finish_reason == "length"
        assert batched.completion_tokens == alone.completion_tokens == MAX_TOKENS
        assert batched.prompt_tokens == alone.prompt_tokens > 0
        assert is_readable(batched.text), batched.text
    same = sum(a.text == b.text for a, b in zip(one_at_a_time, together, strict=True))
    print(f"16 streams ({same}/16 texts as alone): one at a time {sequential_seconds:.1f} s in {sequential_steps:.0f} engine steps, "
          f"together {concurrent_seconds:.1f} s in {concurrent_steps:.0f} steps")
