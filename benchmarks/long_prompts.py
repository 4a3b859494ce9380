"""Long prompts: time to first token with prompts of about 2,000 and 6,000 tokens, at 1 and 4 streams.

Each prompt is a slice of the shipped corpus (benchmarks/corpus.py) cut by token ids of the served
model's own tokenizer so that, with the chat template and the closing instruction, the prompt has
about the asked-for number of tokens; every request starts at a different offset, so no two share a
prefix (prefix caching, if on, finds nothing to reuse). Output is short (16 tokens by default,
``ignore_eos``): this measures prefill. Per prompt length and stream count: TTFT p50/p99, the prompt
tokens the server counted (usage), and prompt tokens per second of wall time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmarks.corpus import ServerTokenizer, TokenSlicer
from benchmarks.loadgen import LoadConfig
from benchmarks.stream_client import ChatResult, Prepared, chat_body, run_closed
from benchmarks.tables import markdown
from benchmarks.workload import summarize

INSTRUCTION = "\n\nSummarize the text above in one sentence."
#: Token offsets of successive prompts in the corpus are this far apart (a prime: no pattern).
OFFSET_STEP = 997


@dataclass(frozen=True)
class LongConfig:
    """Prompt lengths (tokens, chat template included), stream counts, requests per stream, output tokens."""

    prompt_tokens: tuple[int, ...] = (2000, 6000)
    concurrency: tuple[int, ...] = (1, 4)
    requests_per_client: int = 2
    max_tokens: int = 16


def build_requests(slicer: TokenSlicer, overhead: int, target: int, count: int, first: int,
                   config: LoadConfig, max_tokens: int) -> list[Prepared]:
    """``count`` requests of about ``target`` prompt tokens, the n-th starting at corpus offset ``first + n``."""
    body_tokens = max(1, target - overhead)
    requests = []
    for n in range(count):
        text = slicer.text(body_tokens, (first + n) * OFFSET_STEP)
        messages = [{"role": "user", "content": text + INSTRUCTION}]
        requests.append(chat_body(messages, max_tokens, config, {"target_tokens": target}))
    return requests


def _level(target: int, concurrency: int, results: list[ChatResult], wall: float) -> dict[str, Any]:
    """One prompt length at one stream count."""
    level = summarize(concurrency, [r.timing for r in results], wall, None).to_dict()
    prompts = [r.prompt_tokens for r in results if r.prompt_tokens]
    level.update(
        target_prompt_tokens=target,
        mean_prompt_tokens=round(sum(prompts) / len(prompts), 1) if prompts else None,
        prompt_tokens_per_s=round(sum(prompts) / wall, 1) if prompts and wall else None,
    )
    return level


async def run(base_url: str, cfg: LongConfig, tokenizer_url: str | None = None) -> dict[str, Any]:
    """Every prompt length at every stream count against one server; the prompts are cut with the tokenizer of
    the ovserve at ``tokenizer_url`` (default: the server measured), so that another server serving the same
    model (llama-server) gets the same prompts in the same order."""
    load = LoadConfig(base_url=base_url, max_tokens=cfg.max_tokens)
    tokenizer = ServerTokenizer(tokenizer_url or base_url)
    slicer = TokenSlicer(tokenizer)
    overhead = tokenizer.chat_count([{"role": "user", "content": INSTRUCTION.strip()}])
    context = tokenizer.max_model_len()
    # Warm-up: one prompt of the shortest length (its own offset), so that first-use costs of long prompts
    # do not land on the first level.
    levels, skipped, first = [], [], 0
    warmup = build_requests(slicer, overhead, min(cfg.prompt_tokens), 1, first, load, 4)
    first += 1
    await run_closed(warmup, 1, load)
    for target in cfg.prompt_tokens:
        if context and target + cfg.max_tokens > context:
            skipped.append({"target_prompt_tokens": target, "reason": f"above the model's context ({context})"})
            continue
        for concurrency in cfg.concurrency:
            count = concurrency * cfg.requests_per_client
            requests = build_requests(slicer, overhead, target, count, first, load, cfg.max_tokens)
            first += count
            results, wall = await run_closed(requests, concurrency, load)
            level = _level(target, concurrency, results, wall)
            print(f"[long] ~{target} tokens (measured {level['mean_prompt_tokens']}), {concurrency} streams: "
                  f"TTFT p50 {level['ttft_p50_ms']} ms, p99 {level['ttft_p99_ms']} ms, errors {level['errors']}"
                  + (f" ({level['first_error'][:100]})" if level["errors"] else ""), flush=True)
            levels.append(level)
    return {"template_overhead_tokens": overhead, "max_model_len": context, "levels": levels, "skipped": skipped}


def table(label: str, result: dict[str, Any]) -> str:
    """The markdown table of one server's levels."""
    headers = ["server", "prompt tokens (asked / measured)", "streams", "requests", "errors", "TTFT p50 ms",
               "TTFT p99 ms", "prompt tok/s", "wall s"]
    rows = [[label, f"{lv['target_prompt_tokens']} / {lv['mean_prompt_tokens']}", lv["concurrency"], lv["requests"],
             lv["errors"], lv["ttft_p50_ms"], lv["ttft_p99_ms"], lv["prompt_tokens_per_s"], lv["wall_s"]]
            for lv in result["levels"]]
    rows += [[label, sk["target_prompt_tokens"], "—", 0, "—", f"skipped: {sk['reason']}", "", "", ""]
             for sk in result["skipped"]]
    return markdown(headers, rows)
