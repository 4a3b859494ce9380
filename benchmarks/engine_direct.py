"""The ceiling: the same workload driven directly on OpenVINO GenAI's ContinuousBatchingPipeline.

No HTTP, no detokenization: the prompts go through the model's chat template once, then the
token ids are fed to ``add_request`` and a plain ``step()`` loop runs. Concurrency N means N
requests in flight; a new one is added as soon as one finishes, until N * requests_per_client
requests are done. TTFT is measured from ``add_request`` to the end of the first ``step()`` that
returned ids for the request; ITL is the gap between two such steps divided by the ids returned.

Usage::

    python -m benchmarks.engine_direct --model PATH.gguf --concurrency 1,4 --json-out engine.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.workload import (
    PROMPTS,
    LevelResult,
    RequestTiming,
    default_requests_per_client,
    messages_for,
    parse_int_list,
    summarize,
)

#: Bound on the steps of one level: every request needs at most max_tokens + a few steps.
_STEP_SLACK = 64


@dataclass
class _InFlight:
    """One request in flight: its handle (kept alive on purpose) and its timing so far."""

    handle: Any
    start: float
    last: float
    timing: RequestTiming = field(default_factory=RequestTiming)


class Engine:
    """A loaded pipeline plus the pre-tokenized prompts."""

    def __init__(self, model: Path, device: str = "CPU", plugin_config: dict[str, str] | None = None,
                 scheduler: dict[str, Any] | None = None) -> None:
        """Load the pipeline exactly as ``ovserve serve MODEL``'s engine process does (same scheduler and plugin
        settings, ovserve's CPU defaults and the command line's prefix caching included; ``scheduler`` overrides
        them), and tokenize the prompts."""
        import numpy as np
        import openvino as ov
        import openvino_genai as ov_genai

        from ovserve.engine.llm_core import load_pipeline
        from ovserve.engine.settings import EngineSettings, find_model_files, plugin_config_for
        from ovserve.server.serve_models import CLI_PREFIX_CACHING

        self._ov = ov
        self._genai = ov_genai
        started = time.perf_counter()
        self.settings = EngineSettings(find_model_files(model), device=device,
                                       plugin_config=plugin_config_for(device, plugin_config or {}),
                                       **{"enable_prefix_caching": CLI_PREFIX_CACHING, **(scheduler or {})})
        self.pipe = load_pipeline(self.settings)
        self.load_s = time.perf_counter() - started
        tokenizer = self.pipe.get_tokenizer()
        self.prompt_ids: list[Any] = []
        for index in range(len(PROMPTS)):
            text = tokenizer.apply_chat_template(messages_for(index), add_generation_prompt=True)
            ids = tokenizer.encode(text, add_special_tokens=False).input_ids.data
            self.prompt_ids.append(np.array(ids, dtype=np.int64))

    def config(self, max_tokens: int) -> Any:
        """Greedy, fixed-length generation config, built as ovserve builds it for such a request."""
        from ovserve.engine.protocol import SamplingParams

        return SamplingParams(max_new_tokens=max_tokens, temperature=0, ignore_eos=True).to_generation_config()

    def add(self, request_id: int, index: int, cfg: Any) -> _InFlight:
        """Add request number ``index`` (its prompt chosen like the HTTP clients do)."""
        ids = self.prompt_ids[index % len(self.prompt_ids)]
        start = time.perf_counter()
        handle = self.pipe.add_request(request_id, self._ov.Tensor(ids), cfg)
        return _InFlight(handle=handle, start=start, last=start)

    def drain(self, flight: _InFlight, now: float) -> bool:
        """Read every delta of one request after a step; return True once it is finished."""
        finished = False
        while flight.handle.can_read():
            for out in flight.handle.read().values():
                count = len(out.generated_ids)
                if count:
                    _record(flight, count, now)
                if out.finish_reason != self._genai.GenerationFinishReason.NONE:
                    finished = True
        status = flight.handle.get_status()
        if status != self._genai.GenerationStatus.RUNNING and not flight.handle.can_read():
            if status != self._genai.GenerationStatus.FINISHED:
                flight.timing.ok = False
                flight.timing.error = f"request ended with status {status}"
            finished = True
        if finished:
            flight.timing.latency = now - flight.start
        return finished


def _record(flight: _InFlight, count: int, now: float) -> None:
    """Time-stamp ``count`` new ids of one request."""
    timing = flight.timing
    if timing.ttft is None:
        timing.ttft = now - flight.start
    else:
        timing.itl.extend([(now - flight.last) / count] * count)
    flight.last = now
    timing.output_tokens += count
    timing.content_chunks += 1


def run_level(
    engine: Engine, concurrency: int, requests_per_client: int, max_tokens: int, timeout_s: float = 1800.0
) -> LevelResult:
    """Run one warm-up request, then N * requests_per_client requests with N in flight."""
    cfg = engine.config(max_tokens)
    warmup, _ = _run_batch(engine, 1, 1, cfg, max_tokens, timeout_s, first_id=1_000_000)
    total = concurrency * requests_per_client
    cpu0, t0 = time.process_time(), time.perf_counter()
    timings, steps = _run_batch(engine, concurrency, total, cfg, max_tokens, timeout_s, first_id=0)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    extra = {
        "requests_per_client": requests_per_client,
        "steps": steps,
        "warmup_ok": all(t.ok for t in warmup),
        "process_cpu_s": round(cpu, 3),
    }
    return summarize(concurrency, timings, wall, None, extra)


def _run_batch(
    engine: Engine, concurrency: int, total: int, cfg: Any, max_tokens: int, timeout_s: float, first_id: int
) -> tuple[list[RequestTiming], int]:
    """Keep ``concurrency`` requests in flight until ``total`` are done (bounded in steps and time)."""
    pending = deque(range(total))
    active: dict[int, _InFlight] = {}
    timings: list[RequestTiming] = [RequestTiming(ok=False, error="not finished") for _ in range(total)]
    max_steps = (total // concurrency + 1) * (max_tokens + _STEP_SLACK)
    deadline = time.perf_counter() + timeout_s
    steps = 0
    while (pending or active) and steps < max_steps and time.perf_counter() < deadline:
        while pending and len(active) < concurrency:
            index = pending.popleft()
            active[index] = engine.add(first_id + index, index, cfg)
        engine.pipe.step()
        steps += 1
        now = time.perf_counter()
        for index in [i for i, flight in active.items() if engine.drain(flight, now)]:
            timings[index] = active.pop(index).timing
    for flight in active.values():
        flight.handle.cancel()
    if active:
        _drain_cancelled(engine)
    return timings, steps


def _drain_cancelled(engine: Engine, max_steps: int = 16) -> None:
    """Step a few times so cancelled requests leave the scheduler before the next level."""
    for _ in range(max_steps):
        if not engine.pipe.has_non_finished_requests():
            return
        engine.pipe.step()


def run_levels(
    model: Path,
    levels: list[int],
    max_tokens: int,
    requests_per_client: int | None = None,
    plugin_config: dict[str, str] | None = None,
    scheduler: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Load the engine once and run every level; return a JSON-serializable report."""
    engine = Engine(model, plugin_config=plugin_config, scheduler=scheduler)
    results = []
    for concurrency in levels:
        rpc = requests_per_client or default_requests_per_client(concurrency)
        results.append(run_level(engine, concurrency, rpc, max_tokens).to_dict())
    return {"load_s": round(engine.load_s, 2), "plugin_config": engine.settings.plugin_config, "levels": results}


def _parse_plugin_config(items: list[str]) -> dict[str, str]:
    """Parse KEY=VALUE plugin properties."""
    config = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
        config[key] = value
    return config


def main(argv: list[str] | None = None) -> int:
    """Run the in-process engine benchmark and print (or write) the results as JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help=".gguf file or OpenVINO IR folder")
    parser.add_argument("--concurrency", type=parse_int_list, default=[1, 4])
    parser.add_argument("--requests-per-client", type=int, default=None)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--plugin-config", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--scheduler", default="{}", metavar="JSON",
                        help='EngineSettings scheduler fields, e.g. \'{"max_num_batched_tokens": 512}\'')
    parser.add_argument("--json-out", type=Path, default=None, help="write the report here")
    args = parser.parse_args(argv)
    report = run_levels(
        args.model,
        args.concurrency,
        args.max_tokens,
        args.requests_per_client,
        _parse_plugin_config(args.plugin_config),
        json.loads(args.scheduler),
    )
    text = json.dumps(report, indent=2)
    if args.json_out:
        args.json_out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
