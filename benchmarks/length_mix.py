"""A realistic mix of prompt and output lengths, sampled (fixed seed) from a public chat dataset's statistics.

The lengths follow LMSYS-Chat-1M, one million real conversations with 25 LLMs (April-August 2023):
Zheng et al., "LMSYS-Chat-1M: A Large-Scale Real-World LLM Conversation Dataset", ICLR 2024,
arXiv:2309.11998, Table 1 ("basic statistics"): tokens per user prompt 69.5 on average (standard
deviation 143.4), tokens per model response 214.5 (standard deviation 226.7), counted with the Llama 2
tokenizer. Only these four published numbers ship here; nothing is downloaded. Each length is drawn
from the log-normal distribution with that mean and standard deviation (both distributions are
right-skewed: most prompts are short, a few are very long), rounded and clipped to a range; the served
model's tokenizer stands in for Llama 2's.

Request ``i`` is a user message of exactly its sampled number of tokens of the shipped corpus (cut by
token ids through the server's tokenizer, a different offset per request) and asks for its sampled
number of output tokens with ``ignore_eos``. The mix runs closed-loop at the given stream counts, or
open-loop at the given rates (Poisson arrivals, benchmarks/openloop.py).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from benchmarks.corpus import ServerTokenizer, TokenSlicer
from benchmarks.loadgen import LoadConfig
from benchmarks.openloop import OpenLoopConfig, Slo, arrival_times, run_http, within_slo
from benchmarks.stream_client import ChatResult, Prepared, chat_body, run_closed
from benchmarks.tables import markdown
from benchmarks.workload import summarize

# LMSYS-Chat-1M, Table 1 of arXiv:2309.11998 (see the module docstring): mean and standard deviation, tokens.
LMSYS_PROMPT_MEAN, LMSYS_PROMPT_STD = 69.5, 143.4
LMSYS_RESPONSE_MEAN, LMSYS_RESPONSE_STD = 214.5, 226.7
#: Token offsets of successive prompts in the corpus are this far apart.
OFFSET_STEP = 541


@dataclass(frozen=True)
class LengthDist:
    """A log-normal length distribution with a given mean and standard deviation, clipped to [low, high]."""

    mean: float
    std: float
    low: int
    high: int

    def params(self) -> tuple[float, float]:
        """(mu, sigma) of the normal distribution of the logarithm, matching the mean and the deviation."""
        sigma2 = math.log(1.0 + (self.std / self.mean) ** 2)
        return math.log(self.mean) - sigma2 / 2.0, math.sqrt(sigma2)

    def sample(self, rng: random.Random) -> int:
        """One length."""
        mu, sigma = self.params()
        return min(self.high, max(self.low, round(rng.lognormvariate(mu, sigma))))


@dataclass(frozen=True)
class MixConfig:
    """How many requests, the seed, the two distributions, and closed-loop levels or open-loop rates."""

    requests: int = 64
    seed: int = 0
    prompt: LengthDist = field(default_factory=lambda: LengthDist(LMSYS_PROMPT_MEAN, LMSYS_PROMPT_STD, 4, 2048))
    output: LengthDist = field(default_factory=lambda: LengthDist(LMSYS_RESPONSE_MEAN, LMSYS_RESPONSE_STD, 4, 1024))
    concurrency: tuple[int, ...] = (4, 16)
    rates: tuple[float, ...] = ()
    duration_s: float = 60.0
    drain_s: float = 300.0
    slo: Slo = field(default_factory=Slo)


def sample_lengths(count: int, cfg: MixConfig) -> list[tuple[int, int]]:
    """``count`` (prompt tokens, output tokens) pairs, the same for the same seed."""
    rng = random.Random(f"length-mix:{cfg.seed}")
    return [(cfg.prompt.sample(rng), cfg.output.sample(rng)) for _ in range(count)]


def build_requests(lengths: list[tuple[int, int]], slicer: TokenSlicer, config: LoadConfig) -> list[Prepared]:
    """One request per (prompt, output) pair: a user message of that many corpus tokens."""
    requests = []
    for index, (prompt_tokens, output_tokens) in enumerate(lengths):
        text = slicer.text(prompt_tokens, index * OFFSET_STEP)
        info = {"sampled_prompt_tokens": prompt_tokens, "sampled_output_tokens": output_tokens}
        requests.append(chat_body([{"role": "user", "content": text}], output_tokens, config, info))
    return requests


def _level(concurrency: int, results: list[ChatResult], wall: float, slo: Slo) -> dict[str, Any]:
    """One closed-loop level, with the prompt tokens the server counted and the share within the SLOs."""
    level = summarize(concurrency, [r.timing for r in results], wall, None).to_dict()
    prompts = [r.prompt_tokens for r in results if r.prompt_tokens]
    level["mean_prompt_tokens"] = round(sum(prompts) / len(prompts), 1) if prompts else None
    level["slo_share"] = round(sum(within_slo(r.timing, slo) for r in results) / len(results), 3) if results else None
    return level


def describe(lengths: list[tuple[int, int]]) -> dict[str, Any]:
    """Mean and median of the sampled lengths."""
    prompts = sorted(p for p, _ in lengths)
    outputs = sorted(o for _, o in lengths)
    return {"count": len(lengths), "prompt_mean": round(sum(prompts) / len(prompts), 1),
            "prompt_median": prompts[len(prompts) // 2], "output_mean": round(sum(outputs) / len(outputs), 1),
            "output_median": outputs[len(outputs) // 2], "prompt_max": prompts[-1], "output_max": outputs[-1]}


async def run(base_url: str, cfg: MixConfig) -> dict[str, Any]:
    """The mix against one server: every closed-loop level, then every open-loop rate."""
    load = LoadConfig(base_url=base_url, max_tokens=cfg.output.high)
    slicer = TokenSlicer(ServerTokenizer(base_url))
    count = max([cfg.requests, *(len(arrival_times(r, cfg.duration_s, cfg.seed)) for r in cfg.rates)])
    lengths = sample_lengths(count, cfg)
    requests = build_requests(lengths, slicer, load)
    await run_closed([chat_body([{"role": "user", "content": "Hello!"}], 8, load)], 1, load)
    levels = []
    for concurrency in cfg.concurrency:
        results, wall = await run_closed(requests[: cfg.requests], concurrency, load)
        level = _level(concurrency, results, wall, cfg.slo)
        print(f"[mix] {concurrency} streams: {level['tokens_per_s']} tok/s, TTFT p50 {level['ttft_p50_ms']} ms, "
              f"ITL p50 {level['itl_p50_ms']} ms, errors {level['errors']}", flush=True)
        levels.append(level)
    open_cfg = OpenLoopConfig(rates=cfg.rates, duration_s=cfg.duration_s, seed=cfg.seed, drain_s=cfg.drain_s,
                              max_tokens=cfg.output.high, slo=cfg.slo)
    rates = await run_http(base_url, open_cfg, requests, label="ovserve (mix)") if cfg.rates else []
    return {"sampled": describe(lengths[: cfg.requests]), "levels": levels, "rates": rates}


def table(label: str, result: dict[str, Any]) -> str:
    """The closed-loop levels of one server."""
    headers = ["server", "streams", "requests", "errors", "tok/s", "req/s", "TTFT p50 ms", "TTFT p99 ms", "ITL p50 ms",
               "ITL p99 ms", "prompt tokens (mean)", "output tokens (mean)", "within SLO"]
    rows = [[label, lv["concurrency"], lv["requests"], lv["errors"], lv["tokens_per_s"], lv["requests_per_s"],
             lv["ttft_p50_ms"], lv["ttft_p99_ms"], lv["itl_p50_ms"], lv["itl_p99_ms"], lv["mean_prompt_tokens"],
             lv["mean_tokens_per_request"], lv["slo_share"]] for lv in result["levels"]]
    return markdown(headers, rows)
