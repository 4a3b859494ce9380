"""Prompt lookup decoding (OVMS's ``plugin_config: {"prompt_lookup": true}``), on and off, on tasks whose answer
copies from the prompt and on tasks whose answer does not.

Three kinds of request, greedy, streamed, ending where the model ends them (no ``ignore_eos``):

- ``copy``: a passage of the shipped corpus (benchmarks/corpus.py), to be repeated word for word;
- ``code``: a function of Python's own standard library (its source, shipped with Python), to be returned
  with a docstring added;
- ``open``: the closed loop's open-ended prompts (benchmarks/workload.py), where the prompt has nothing to copy:
  what prompt lookup costs when its guesses miss.

Prefix caching is off on both servers (each kind's prompts repeat at each stream count). Per server, kind and
stream count: output tok/s, time per output token after the first (p50 of each request's
``(latency - TTFT) / (tokens - 1)``), TTFT p50, and, against the first server, how many answers are the same
text (greedy answers should not change; the engine checks every proposed token).
"""

from __future__ import annotations

import inspect
import json
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from benchmarks.corpus import words
from benchmarks.loadgen import LoadConfig
from benchmarks.stream_client import ChatResult, Prepared, chat_body, run_closed
from benchmarks.tables import markdown
from benchmarks.workload import PROMPTS, summarize

KINDS = ("copy", "code", "open")
#: Server flags of the two variants; prefix caching off in both, as each kind's prompts repeat at each stream count.
_NO_CACHE = ("--enable-prefix-caching", "false")
VARIANTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("prompt lookup off", _NO_CACHE),
    ("prompt lookup on", (*_NO_CACHE, "--plugin_config", json.dumps({"prompt_lookup": True}))),
)
#: Standard library functions of a few dozen lines each, for the ``code`` kind.
CODE_SOURCES = ("textwrap.dedent", "shlex.quote", "textwrap.indent", "colorsys.hls_to_rgb", "json.dumps",
                "base64.b64encode", "colorsys.rgb_to_hls", "string.capwords")


@dataclass(frozen=True)
class PromptLookupConfig:
    """Requests per kind and stream count, stream counts, the output cap, words per ``copy`` passage."""

    requests: int = 8
    concurrency: tuple[int, ...] = (1, 4)
    max_tokens: int = 256
    passage_words: int = 120


def _source(dotted: str) -> str:
    """The source text of a standard library function named ``module.function``."""
    module_name, _, name = dotted.rpartition(".")
    module = __import__(module_name, fromlist=[name])
    return inspect.getsource(getattr(module, name))


def prompts(kind: str, count: int, cfg: PromptLookupConfig) -> list[str]:
    """``count`` user messages of one kind, each different."""
    if kind == "copy":
        return [f"Repeat the following text word for word, and nothing else:\n\n"
                f"{words(cfg.passage_words, 1009 * i)}" for i in range(count)]
    if kind == "code":
        return [f"Add a one-line docstring to this Python function and return the whole function:\n\n"
                f"```python\n{_source(CODE_SOURCES[i % len(CODE_SOURCES)])}```" for i in range(count)]
    return [PROMPTS[i % len(PROMPTS)] for i in range(count)]


def _per_token_ms(result: ChatResult) -> float | None:
    """A request's time per output token after its first, in ms."""
    timing = result.timing
    if not timing.ok or timing.ttft is None or timing.output_tokens < 2:
        return None
    return (timing.latency - timing.ttft) / (timing.output_tokens - 1) * 1000.0


def _level(kind: str, concurrency: int, results: list[ChatResult], wall: float) -> dict[str, Any]:
    """One kind at one stream count."""
    level = summarize(concurrency, [r.timing for r in results], wall, None).to_dict()
    per_token = [ms for ms in map(_per_token_ms, results) if ms is not None]
    level.update(kind=kind, tpot_p50_ms=round(statistics.median(per_token), 2) if per_token else None,
                 answers=[r.text if r.timing.ok else None for r in results])
    return level


async def run(base_url: str, cfg: PromptLookupConfig, steps: Callable[[str], float] | None = None,
              label: str = "prompt-lookup") -> dict[str, Any]:
    """Every kind at every stream count against one server; with ``steps`` (the engine's step count so far, read
    from the server), also the tokens each engine step gave (``tokens_per_step``)."""
    load = LoadConfig(base_url=base_url, max_tokens=cfg.max_tokens, ignore_eos=False)
    await run_closed([chat_body([{"role": "user", "content": "Hello!"}], 8, load)], 1, load)
    levels = []
    for kind in KINDS:
        texts = prompts(kind, cfg.requests, cfg)
        for concurrency in cfg.concurrency:
            requests: list[Prepared] = [chat_body([{"role": "user", "content": text}], cfg.max_tokens, load)
                                        for text in texts]
            before = steps(base_url) if steps is not None else 0.0
            results, wall = await run_closed(requests, concurrency, load)
            level = _level(kind, concurrency, results, wall)
            per_step = ""
            if steps is not None:
                taken = steps(base_url) - before
                level["tokens_per_step"] = round(level["output_tokens"] / taken, 2) if taken else None
                per_step = f", {level['tokens_per_step']} tokens a step"
            print(f"[{label}] {kind}, {concurrency} streams: {level['tokens_per_s']} tok/s, per token "
                  f"{level['tpot_p50_ms']} ms{per_step}, errors {level['errors']}", flush=True)
            levels.append(level)
    return {"levels": levels}


def table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """One line per server, kind and stream count; speed-ups and equal answers against the first server."""
    headers = ["server", "kind", "streams", "requests", "errors", "output tokens", "tok/s", "tok/s ÷ first",
               "per token p50 ms", "TTFT p50 ms", "answers equal to the first"]
    body = [[label, lv["kind"], lv["concurrency"], lv["requests"], lv["errors"], lv["output_tokens"],
             lv["tokens_per_s"], ratio, lv["tpot_p50_ms"], lv["ttft_p50_ms"], same]
            for label, lv, ratio, same in against_first(rows)]
    return markdown(headers, body)


def against_first(rows: list[tuple[str, dict[str, Any]]]) -> Iterator[tuple[str, dict[str, Any], float | None, str]]:
    """Each server's levels, with its tok/s over the first server's at the same kind and stream count, and how many
    of its answers equal the first server's (``"3/8"``)."""
    base = {(lv["kind"], lv["concurrency"]): lv for lv in rows[0][1]["levels"]}
    for label, result in rows:
        for lv in result["levels"]:
            first = base[(lv["kind"], lv["concurrency"])]
            ratio = round(lv["tokens_per_s"] / first["tokens_per_s"], 2) if first["tokens_per_s"] else None
            same = sum(a is not None and a == b for a, b in zip(lv["answers"], first["answers"], strict=True))
            yield label, lv, ratio, f"{same}/{len(lv['answers'])}"
