"""Many clients at once: requests are batched together and give the same text as one at a time."""

import asyncio
import time

import openai
import pytest

from tests.conftest import MODEL_NAME

pytestmark = pytest.mark.slow

QUESTIONS = [
    "What is the capital of France?", "Name three colours.", "What is 2 + 2?", "Who wrote Hamlet?",
    "What is the largest planet?", "Say hello in Spanish.", "What is water made of?", "Name a fruit.",
    "How many days are in a week?", "What is the opposite of hot?", "Name a musical instrument.",
    "What do bees make?", "What colour is the sky?", "Name an ocean.", "What is the boiling point of water?",
    "Name a programming language.",
]


async def stream_one(client: openai.AsyncOpenAI, question: str) -> tuple[str, float, float]:
    """(text, time of the first content, time of the end)."""
    first = None
    parts = []
    stream = await client.chat.completions.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": question}], temperature=0, max_tokens=48,
        stream=True, extra_body={"ignore_eos": True})
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or time.monotonic()
            parts.append(chunk.choices[0].delta.content)
    return "".join(parts), first or time.monotonic(), time.monotonic()


async def test_sixteen_streams_run_together_and_match_the_same_requests_one_at_a_time(server):
    client = openai.AsyncOpenAI(base_url=f"{server.base_url}/v3", api_key="unused", max_retries=0)
    started = time.monotonic()
    one_at_a_time = [await stream_one(client, q) for q in QUESTIONS]
    sequential_seconds = time.monotonic() - started

    started = time.monotonic()
    together = await asyncio.gather(*(stream_one(client, q) for q in QUESTIONS))
    concurrent_seconds = time.monotonic() - started

    assert [text for text, _, _ in together] == [text for text, _, _ in one_at_a_time]
    assert all(text for text, _, _ in together)
    # They ran as one batch: every stream had begun before any stream ended.
    assert max(first for _, first, _ in together) < min(end for _, _, end in together)
    print(f"16 streams: one at a time {sequential_seconds:.1f} s, together {concurrent_seconds:.1f} s "
          f"({sequential_seconds / concurrent_seconds:.1f}x)")
