"""A/B runs of one-stream decode steps under different CPU plugin properties (or IR folders), interleaved.

Every variant is compiled once in this process (:class:`benchmarks.step_profile.Stepper`, ``paged`` as the engine
runs the model, with ovserve's plugin properties for this CPU under the variant's own). Then ``--runs`` times, the
variants each fill a ``--context``-token prompt afresh, then take turns step by step (in an order that rotates from
run to run) for ``--steps`` greedy decode steps each; a run's figure for a variant is the median of its steps. A
variant's result is the median of its runs and their spread (fastest and slowest run), beside its ratio to the first
variant. Turns of one step put load from elsewhere on the machine on every variant alike; the price is that every
step switches compiled models (each has its own thread arena), which the engine never does.

Usage::

    python -m benchmarks.step_ab --variant default: --variant dq0:DYNAMIC_QUANTIZATION_GROUP_SIZE=0
    python -m benchmarks.step_ab --variant paged: --variant stateful:mode=stateful --variant ir:ir=/path/to/ir
    python -m benchmarks.step_ab --variant bare: --variant engine:engine=1   # what GenAI adds around the step
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import machine_info
from benchmarks.step_profile import REPO, WARMUP_STEPS, Stepper, _prompt, resolve_ir
from benchmarks.tables import markdown
from benchmarks.workload import MODEL_PATH

#: Prompt ids are drawn below this (every model the benchmarks serve has a larger vocabulary).
VOCAB = 32_000


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """``NAME:KEY=VALUE,KEY=VALUE`` (``NAME:`` alone: ovserve's defaults); the key ``ir`` names another IR folder,
    ``mode`` another mode (``paged`` or ``stateful``), ``engine=1`` the engine itself (:class:`EngineStepper`), on
    ``model`` if given (a ``.gguf`` or an IR folder); the others are plugin properties."""
    name, sep, rest = text.partition(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME:KEY=VALUE,..., got {text!r}")
    settings = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE in {text!r}, got {item!r}")
        settings[key] = value
    return name, settings


class EngineStepper:
    """The engine itself as a variant: ``ContinuousBatchingPipeline`` loaded as ovserve loads it
    (:class:`benchmarks.engine_direct.Engine`), one greedy request in flight, each decode a ``step()``: what GenAI's
    scheduler and sampler add to the inference shows against the bare compiled model."""

    def __init__(self, model: Path, plugin_config: dict[str, str]) -> None:
        from benchmarks.engine_direct import Engine

        self.engine = Engine(model, plugin_config=plugin_config)
        self.handle: Any = None
        self.number = 0

    def prefill(self, ids: list[int]) -> np.ndarray:
        """Cancel the request in flight, if any, and start one on ``ids`` (run until its first token)."""
        import openvino as ov

        from ovserve.engine.protocol import SamplingParams

        if self.handle is not None:
            self.handle.cancel()
            while self.engine.pipe.has_non_finished_requests():
                self.engine.pipe.step()
        self.number += 1
        config = SamplingParams(max_new_tokens=4096, temperature=0, ignore_eos=True).to_generation_config()
        self.handle = self.engine.pipe.add_request(self.number, ov.Tensor(np.array(ids, np.int64)), config)
        while not self.handle.can_read():
            self.engine.pipe.step()
        self.handle.read()
        return np.zeros(1, np.float32)

    def decode(self, ids: list[int]) -> np.ndarray:
        """One engine step (it samples the token itself; ``ids`` is ignored) and read its output."""
        self.engine.pipe.step()
        self.handle.read()
        return np.zeros(1, np.float32)

    def properties(self) -> dict[str, str]:
        return {"engine": "ContinuousBatchingPipeline", **{k: str(v) for k, v in
                                                           self.engine.settings.plugin_config.items()}}


def one_run(steppers: list[Any], order: list[int], context: int, steps: int) -> list[tuple[float, float, float]]:
    """One run: every variant starts a fresh sequence (prefill and a few unmeasured steps), then the variants take
    turns step by step in ``order``; returns each variant's median and 10th-percentile step (ms), and the median
    CPU time of this process's threads a step (ms: with one inference thread, the work itself, whatever else
    the machine runs)."""
    logits = {index: steppers[index].prefill(_prompt(context, VOCAB)) for index in order}
    walls: dict[int, list[float]] = {index: [] for index in order}
    cpus: dict[int, list[float]] = {index: [] for index in order}
    for number in range(WARMUP_STEPS // 2 + steps):
        for index in order:
            token = int(np.argmax(logits[index]))
            started, cpu = time.perf_counter(), time.process_time()
            logits[index] = steppers[index].decode([token])
            if number >= WARMUP_STEPS // 2:
                walls[index].append((time.perf_counter() - started) * 1e3)
                cpus[index].append((time.process_time() - cpu) * 1e3)
    return [(statistics.median(walls[index]), _p10(walls[index]), statistics.median(cpus[index]))
            for index in range(len(steppers))]


def _p10(values: list[float]) -> float:
    """The 10th percentile: on a machine others load, the steps least disturbed."""
    return sorted(values)[len(values) // 10]


def run(model: Path, variants: list[tuple[str, dict[str, str]]], runs: int, context: int, steps: int,
        mode: str, cache: Path) -> list[dict[str, Any]]:
    """Compile every variant, run them interleaved, and return one result row per variant."""
    from ovserve.engine.settings import plugin_config_for

    default_ir = resolve_ir(model, cache)
    capacity = context + WARMUP_STEPS + steps + 1
    steppers: list[Any] = []
    for _, settings in variants:
        properties = {key: value for key, value in settings.items() if key not in ("ir", "mode", "engine", "model")}
        if settings.get("engine"):
            steppers.append(EngineStepper(Path(settings.get("model", model)), properties))
            continue
        ir = Path(settings["ir"]) if "ir" in settings else default_ir
        steppers.append(Stepper(ir, settings.get("mode", mode), plugin_config_for("CPU", properties), capacity))
    figures: list[list[float]] = [[] for _ in variants]
    quiet: list[list[float]] = [[] for _ in variants]
    cpu: list[list[float]] = [[] for _ in variants]
    for number in range(runs):
        order = [(number + offset) % len(variants) for offset in range(len(variants))]
        for index, (median, p10, cpu_ms) in enumerate(one_run(steppers, order, context, steps)):
            figures[index].append(median)
            quiet[index].append(p10)
            cpu[index].append(cpu_ms)
    base, quiet_base = statistics.median(figures[0]), statistics.median(quiet[0])
    rows = []
    for (name, settings), values, fast, used, stepper in zip(variants, figures, quiet, cpu, steppers, strict=True):
        median = statistics.median(values)
        rows.append({"variant": name, "settings": settings, "runs_ms": values, "median_ms": median,
                     "min_ms": min(values), "max_ms": max(values), "ratio": median / base,
                     "p10_runs_ms": fast, "p10_ms": statistics.median(fast),
                     "p10_ratio": statistics.median(fast) / quiet_base, "cpu_runs_ms": used,
                     "cpu_ms": statistics.median(used), "compiled": stepper.properties()})
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the variants and print the table (and write the JSON with ``--json-out``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=MODEL_PATH, help=".gguf file or OpenVINO IR folder")
    parser.add_argument("--variant", type=parse_variant, action="append", required=True,
                        metavar="NAME:KEY=VALUE,...", help="a variant (the first is the baseline); repeat")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=32, help="timed decode steps a run")
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--mode", choices=("paged", "stateful"), default="paged")
    parser.add_argument("--cache", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.runs < 1 or args.steps < 1 or args.context < 1:
        parser.error("--runs, --steps and --context must be at least 1")
    machine = machine_info(REPO)
    rows = run(args.model, args.variant, args.runs, args.context, args.steps, args.mode, args.cache)
    print(f"{args.mode}, context {args.context}, {args.runs} interleaved runs of {args.steps} steps; load average "
          f"at start {machine['loadavg_at_start']}")
    print(markdown(["variant", "settings", "step p50 ms (median of runs)", "spread ms", "ratio", "runs ms",
                    "step p10 ms", "p10 ratio", "CPU ms a step"],
                   [[row["variant"], " ".join(f"{k}={v}" for k, v in row["settings"].items()) or "defaults",
                     round(row["median_ms"], 2), f"{row['min_ms']:.2f} to {row['max_ms']:.2f}", round(row["ratio"], 3),
                     " ".join(f"{v:.2f}" for v in row["runs_ms"]), round(row["p10_ms"], 2),
                     round(row["p10_ratio"], 3), round(row["cpu_ms"], 2)] for row in rows]))
    if args.json_out:
        args.json_out.write_text(json.dumps({"machine": machine, "config": vars(args) | {"variant": args.variant},
                                             "rows": rows}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
