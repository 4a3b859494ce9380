"""Streamed chats over the official client, with what a test compares: text, finish, usage, timing."""

import time
from dataclasses import dataclass

import openai

from tests.conftest import MODEL_NAME

QUESTIONS = [
    "What is the capital of France?", "Name three colours.", "What is 2 + 2?", "Who wrote Hamlet?",
    "What is the largest planet?", "Say hello in Spanish.", "What is water made of?", "Name a fruit.",
    "How many days are in a week?", "What is the opposite of hot?", "Name a musical instrument.",
    "What do bees make?", "What colour is the sky?", "Name an ocean.", "What is the boiling point of water?",
    "Name a programming language.",
]
MAX_TOKENS = 48


@dataclass
class Streamed:
    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    first_content: float
    end: float


async def stream_one(client: openai.AsyncOpenAI, question: str, **fields) -> Streamed:
    """One streamed chat of ``MAX_TOKENS`` tokens (``ignore_eos``), at temperature 0 unless ``fields``
    say otherwise, with its usage."""
    first = None
    parts = []
    finish = None
    usage = None
    stream = await client.chat.completions.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": question}], max_tokens=MAX_TOKENS, stream=True,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True}, **{"temperature": 0, **fields})
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        if not chunk.choices:
            continue
        if chunk.choices[0].delta.content:
            first = first or time.monotonic()
            parts.append(chunk.choices[0].delta.content)
        finish = chunk.choices[0].finish_reason or finish
    assert usage is not None, "the stream ended without its usage chunk"
    return Streamed("".join(parts), finish, usage.prompt_tokens, usage.completion_tokens,
                    first or time.monotonic(), time.monotonic())


def wait_for(condition, timeout=15.0):
    """Whether ``condition()`` came true within ``timeout`` seconds (asked every 50 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False
