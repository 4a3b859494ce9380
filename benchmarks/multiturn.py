"""Multi-turn chat sessions sharing one long system prompt: what prefix caching saves on later turns.

``sessions`` conversations (default 8), ``concurrency`` of them at a time (4), ``turns`` turns each
(4). Every conversation starts with the same system prompt of about 1,200 words (an instruction
plus a passage of the shipped corpus, benchmarks/corpus.py); each turn sends the whole conversation
so far: the system prompt, every earlier user message and the answer the server gave to it, and a
new user message. Answers are greedy and ``ignore_eos`` (64 tokens by default), so both servers see
the same conversations. Reported: TTFT p50 of turn 1 against later turns (and per turn), with the
prompt tokens of each turn, once per server (prefix caching on and off).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from benchmarks.corpus import words
from benchmarks.loadgen import LoadConfig
from benchmarks.stream_client import ChatResult, chat_body, chat_stream, new_session, run_closed
from benchmarks.tables import markdown, ms
from benchmarks.workload import percentile

SYSTEM_INTRO = ("You are a patient Python tutor. Answer the user's questions using the reference text below, "
                "quote it where it helps, and keep every answer short and concrete.\n\nReference text:\n")
#: Where in the corpus the warm-up prompt's words start (far from the system prompt's).
WARMUP_OFFSET = 30_000
#: The user messages; session ``s`` at turn ``t`` asks ``QUESTIONS[(s + 3 * t) % len(QUESTIONS)]``.
QUESTIONS: tuple[str, ...] = (
    "What does the reference text say about assignment statements?",
    "Explain the difference between a statement and an expression, with an example.",
    "How does Python decide which except clause handles an exception?",
    "Give me three tips for writing clearer loops, based on the text.",
    "What happens when a function is called with keyword arguments?",
    "Summarize your previous answer in two sentences.",
    "Can you show a short code example of what you just described?",
    "Which part of the reference text is the most confusing for beginners, and why?",
    "How are names looked up inside nested functions?",
    "What is the difference between 'is' and '==' in Python?",
    "List the kinds of literals the text mentions.",
    "Thank you. One more question: how do augmented assignments work?",
)


@dataclass(frozen=True)
class MultiTurnConfig:
    """How many sessions, how many at a time, turns per session, system prompt words, output tokens."""

    sessions: int = 8
    concurrency: int = 4
    turns: int = 4
    system_words: int = 1200
    max_tokens: int = 64


def system_prompt(word_count: int) -> str:
    """The shared system prompt: an instruction and ``word_count`` words in all."""
    intro_words = len(SYSTEM_INTRO.split())
    return SYSTEM_INTRO + words(max(0, word_count - intro_words))


def user_message(session: int, turn: int) -> str:
    """The user's message of one session at one turn (0-based)."""
    return QUESTIONS[(session + 3 * turn) % len(QUESTIONS)]


async def _session(http: Any, number: int, cfg: MultiTurnConfig, system: str, load: LoadConfig) -> list[ChatResult]:
    """One conversation, turn after turn; it stops at the first failed turn."""
    messages = [{"role": "system", "content": system}]
    results = []
    for turn in range(cfg.turns):
        messages.append({"role": "user", "content": user_message(number, turn)})
        request = chat_body(list(messages), cfg.max_tokens, load, {"session": number, "turn": turn + 1})
        result = await chat_stream(http, request, load)
        results.append(result)
        if not result.timing.ok:
            break
        messages.append({"role": "assistant", "content": result.text})
    return results


async def run(base_url: str, cfg: MultiTurnConfig) -> dict[str, Any]:
    """Every session against one server, ``cfg.concurrency`` at a time; the per-turn summary."""
    load = LoadConfig(base_url=base_url, max_tokens=cfg.max_tokens)
    system = system_prompt(cfg.system_words)
    # A warm-up of about the first turn's length without the system prompt (other words of the corpus), so
    # that first-use costs of long prompts do not land on turn 1 and the shared prefix is not in the cache.
    warmup = [{"role": "user", "content": words(cfg.system_words, start=WARMUP_OFFSET)}]
    await run_closed([chat_body(warmup, 8, load)], 1, load)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(cfg.sessions):
        queue.put_nowait(number)
    results: list[ChatResult] = []

    async def worker() -> None:
        while not queue.empty():
            results.extend(await _session(http, queue.get_nowait(), cfg, system, load))

    async with new_session(load, cfg.concurrency + 1) as http:
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(min(cfg.concurrency, cfg.sessions))))
        wall = time.perf_counter() - started
    return summarize(results, wall, cfg)


def _turn_stats(results: list[ChatResult]) -> dict[str, Any]:
    """TTFT p50/p99 and mean prompt tokens of some completed turns."""
    ttfts = [r.timing.ttft for r in results if r.timing.ok and r.timing.ttft is not None]
    prompts = [r.prompt_tokens for r in results if r.prompt_tokens]
    return {"requests": len(results), "ttft_p50_ms": ms(percentile(ttfts, 50)),
            "ttft_p99_ms": ms(percentile(ttfts, 99)),
            "mean_prompt_tokens": round(sum(prompts) / len(prompts), 1) if prompts else None}


def summarize(results: list[ChatResult], wall: float, cfg: MultiTurnConfig) -> dict[str, Any]:
    """Turn 1 against later turns, and each turn alone."""
    failed = [r for r in results if not r.timing.ok]
    first = _turn_stats([r for r in results if r.info["turn"] == 1])
    later = _turn_stats([r for r in results if r.info["turn"] > 1])
    ratio = (later["ttft_p50_ms"] / first["ttft_p50_ms"]) if later["ttft_p50_ms"] and first["ttft_p50_ms"] else None
    return {
        "requests": len(results),
        "errors": len(failed),
        "first_error": failed[0].timing.error if failed else "",
        "wall_s": round(wall, 2),
        "turn_1": first,
        "later_turns": later,
        "later_over_first_ttft_p50": None if ratio is None else round(ratio, 3),
        "per_turn": {t: _turn_stats([r for r in results if r.info["turn"] == t]) for t in range(1, cfg.turns + 1)},
    }


def table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """One line per server: turn 1 against later turns."""
    headers = ["server", "requests", "errors", "turn 1 TTFT p50 ms", "later turns TTFT p50 ms", "later / turn 1",
               "turn 1 prompt tokens", "later prompt tokens (mean)", "TTFT p50 per turn ms", "wall s"]
    body = []
    for label, r in rows:
        per_turn = " / ".join(str(s["ttft_p50_ms"]) for s in r["per_turn"].values())
        body.append([label, r["requests"], r["errors"], r["turn_1"]["ttft_p50_ms"], r["later_turns"]["ttft_p50_ms"],
                     r["later_over_first_ttft_p50"], r["turn_1"]["mean_prompt_tokens"],
                     r["later_turns"]["mean_prompt_tokens"], per_turn, r["wall_s"]])
    return markdown(headers, body)
