"""The shared workload and the metrics every target reports.

Every target (the engine in-process, ovserve, llama-server, llama-cpp-python) runs the same
workload: ``concurrency`` streams, each running ``requests_per_client`` chat requests back to
back, with the prompt of request ``i`` being ``PROMPTS[i % len(PROMPTS)]``, greedy decoding and a
fixed output length. The per-request timings are reduced to one :class:`LevelResult` per
concurrency level by :func:`summarize`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ovserve.store.fetch import DEFAULT_MODEL, default_models_dir

#: Fixed, varied questions that all ask for a long answer, so that a server which ignores
#: ``ignore_eos`` (llama-cpp-python) still tends to produce the full ``max_tokens``.
PROMPTS: tuple[str, ...] = (
    "Explain in detail how a refrigerator works, step by step, and why each step matters.",
    "Write a long story about a lighthouse keeper who finds a message in a bottle.",
    "Describe the history of the printing press and its effects on European society.",
    "Give a detailed beginner's guide to growing tomatoes on a balcony, with many tips.",
    "Explain how the internet routes a message from one computer to another, in depth.",
    "Write a detailed travel guide for three days in Rome, hour by hour.",
    "Explain photosynthesis to a curious twelve-year-old, with examples and analogies.",
    "List and explain twenty good habits for writing clean, maintainable Python code.",
)

#: The model name sent in every request (ovserve serves the model under this name; the peers
#: are started with it as their alias).
MODEL_NAME = DEFAULT_MODEL.name
#: The .gguf every target serves unless told otherwise (``ovserve pull`` puts it there).
MODEL_PATH = DEFAULT_MODEL.path(default_models_dir())


def prompt_for(index: int) -> str:
    """Return the prompt of request number ``index`` (deterministic, cycles through PROMPTS)."""
    return PROMPTS[index % len(PROMPTS)]


def messages_for(index: int) -> list[dict[str, str]]:
    """Return the chat messages of request number ``index``."""
    return [{"role": "user", "content": prompt_for(index)}]


def default_requests_per_client(concurrency: int) -> int:
    """Requests each client runs back to back when not set: 4 up to 4 streams, then 2 rounds."""
    return 4 if concurrency <= 4 else 2


@dataclass
class RequestTiming:
    """What one request measured. Times are seconds from the start of the request.

    ``itl`` holds inter-token latencies: for every content chunk after the first, the gap to the
    previous content chunk divided by the number of tokens in that chunk (exact for the engine;
    for HTTP streams the tokens per chunk are estimated as usage tokens / content chunks).
    """

    ok: bool = True
    error: str = ""
    ttft: float | None = None
    latency: float = 0.0
    output_tokens: int = 0
    content_chunks: int = 0
    itl: list[float] = field(default_factory=list)


@dataclass
class LevelResult:
    """The metrics of one target at one concurrency level."""

    concurrency: int
    requests: int
    completed: int
    errors: int
    first_error: str
    wall_s: float
    output_tokens: int
    tokens_per_s: float
    requests_per_s: float
    mean_tokens_per_request: float
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    itl_p50_ms: float | None
    itl_p99_ms: float | None
    client_cpu_s: float | None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serializable dict."""
        return asdict(self)


def percentile(values: list[float], q: float) -> float | None:
    """Return the ``q``-th percentile (0..100) with linear interpolation, None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _ms(value: float | None) -> float | None:
    """Convert seconds to rounded milliseconds, keeping None."""
    return None if value is None else round(value * 1000.0, 2)


def summarize(
    concurrency: int,
    timings: list[RequestTiming],
    wall_s: float,
    client_cpu_s: float | None,
    extra: dict[str, Any] | None = None,
) -> LevelResult:
    """Reduce the per-request timings of one concurrency level to a :class:`LevelResult`."""
    done = [t for t in timings if t.ok]
    failed = [t for t in timings if not t.ok]
    tokens = sum(t.output_tokens for t in done)
    ttfts = [t.ttft for t in done if t.ttft is not None]
    itls = [gap for t in done for gap in t.itl]
    chunks = sum(t.content_chunks for t in done)
    wall = max(wall_s, 1e-9)
    extra = {**(extra or {}), "tokens_per_chunk": round(tokens / chunks, 3) if chunks else None}
    return LevelResult(
        concurrency=concurrency,
        requests=len(timings),
        completed=len(done),
        errors=len(failed),
        first_error=failed[0].error if failed else "",
        wall_s=round(wall_s, 3),
        output_tokens=tokens,
        tokens_per_s=round(tokens / wall, 2),
        requests_per_s=round(len(done) / wall, 3),
        mean_tokens_per_request=round(tokens / len(done), 1) if done else 0.0,
        ttft_p50_ms=_ms(percentile(ttfts, 50)),
        ttft_p99_ms=_ms(percentile(ttfts, 99)),
        itl_p50_ms=_ms(percentile(itls, 50)),
        itl_p99_ms=_ms(percentile(itls, 99)),
        client_cpu_s=None if client_cpu_s is None else round(client_cpu_s, 3),
        extra=extra,
    )


def parse_int_list(text: str) -> list[int]:
    """Parse a comma-separated list of positive integers such as ``"1,4,16,64"``."""
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"expected comma-separated positive integers, got {text!r}")
    return values
