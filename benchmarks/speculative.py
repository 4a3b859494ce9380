"""Speculative decoding (``ovserve serve MODEL --draft-model DRAFT``, OVMS's ``draft_models_path``), on and off.

No smaller model than the default is at hand, so the default model is its own draft (its .gguf; the draft runs as its
OpenVINO IR). That bounds the acceptance rate from above (the draft proposes what the model would say, up to the two
formats' numerics) and is no speed-up to hope for: the draft costs as much as the model. The figures show what the
plumbing costs and gives, not what a real draft would.

Two kinds of request from benchmarks/prompt_lookup.py (``open``: the closed loop's open-ended prompts; ``copy``: a
passage to repeat), greedy, streamed, ending where the model ends them. Per server, kind and stream count: output
tok/s, time per output token after the first, and from the engine's step counter (``/metrics``) the output tokens per
engine step; at one stream, each step is one request's, so the acceptance rate is
``(tokens per step - 1) / num_assistant_tokens`` (steps include each request's prefill step, so it is a lower bound).
"""

from __future__ import annotations

from typing import Any

import httpx

from benchmarks import prompt_lookup
from benchmarks.openloop import metrics_url
from benchmarks.prompt_lookup import PromptLookupConfig
from benchmarks.tables import markdown

KINDS = ("open", "copy")
#: The draft's tokens per step (OVMS's default, which ovserve applies when a request does not say).
NUM_ASSISTANT_TOKENS = 5
STEPS = "ovserve_engine_steps_total"


def variants(model: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The two servers: without a draft, and with the model as its own draft (prefix caching off in both)."""
    no_cache = ("--enable-prefix-caching", "false")
    return (("draft off", no_cache), ("draft on (the model itself)", (*no_cache, "--draft-model", model)))


def engine_steps(base_url: str) -> float:
    """The engine's steps so far, from ``/metrics``."""
    for line in httpx.get(metrics_url(base_url), timeout=10).text.splitlines():
        if line.startswith(STEPS):
            return float(line.split()[-1])
    raise RuntimeError(f"{metrics_url(base_url)} has no {STEPS}")


async def run(base_url: str, cfg: PromptLookupConfig) -> dict[str, Any]:
    """Every kind at every stream count against one server, with the tokens each engine step gave."""
    return await prompt_lookup.run(base_url, cfg, steps=engine_steps, label="speculative")


def table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """One line per server, kind and stream count; speed-ups and equal answers against the first server."""
    headers = ["server", "kind", "streams", "requests", "errors", "output tokens", "tok/s", "tok/s ÷ first",
               "per token p50 ms", "tokens a step", "acceptance (1 stream)", "answers equal to the first"]
    body = []
    for label, lv, ratio, same in prompt_lookup.against_first(rows):
        per_step = lv["tokens_per_step"]
        acceptance = (f"{max(0.0, (per_step - 1) / NUM_ASSISTANT_TOKENS):.0%}"
                      if per_step and lv["concurrency"] == 1 and "on" in label else "")
        body.append([label, lv["kind"], lv["concurrency"], lv["requests"], lv["errors"], lv["output_tokens"],
                     lv["tokens_per_s"], ratio, lv["tpot_p50_ms"], per_step, acceptance, same])
    return markdown(headers, body)
