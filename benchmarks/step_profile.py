"""One decode step measured to the kernel: the OpenVINO CPU plugin's per-node counters for one stream.

GenAI's pipelines do not expose their infer request, so this compiles the model itself, as the engine does: the
IR that GenAI writes from the ``.gguf`` (:mod:`ovserve.store.gguf_export`; an IR folder is used as it is), in
``paged`` mode with OpenVINO's SDPA-to-PagedAttention transformation (what ``ContinuousBatchingPipeline``, the
engine, runs; KV-cache blocks of the shape the compiled model asks for) or in ``stateful`` mode as it is (what
``LLMPipeline`` runs), with the output projection on the last token only (as both pipelines do), compiled with
ovserve's plugin properties for this CPU (``plugin_config_for``, plus any ``--plugin-config``). It fills a
``--context``-token prompt, then runs single-token decode steps, greedy:

- ``--steps`` steps without counters: the inference's wall time, and what a greedy sampler's work costs on the
  logits (argmax; argmax plus a log-softmax, which a sampler reporting log-probabilities adds);
- the same steps compiled with ``PERF_COUNT``: every executed node's time, grouped by node type and kernel, by
  part of the model (:mod:`benchmarks.step_breakdown`) and by layer, with the bytes of weights each part reads;
- with ``--pipeline``, the same model loaded as the engine loads it (:mod:`benchmarks.engine_direct`), one
  stream: its inter-token p50, so that what GenAI adds around the inference (scheduler, sampler) shows.

Usage::

    python -m benchmarks.step_profile                         # the default model, paged, 128-token context
    python -m benchmarks.step_profile --mode stateful --plugin-config INFERENCE_PRECISION_HINT=f32
    python -m benchmarks.step_profile --pipeline --json-out profile.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import step_breakdown as sb
from benchmarks.engine_direct import _parse_plugin_config
from benchmarks.report import machine_info
from benchmarks.tables import markdown
from benchmarks.workload import MODEL_PATH

REPO = Path(__file__).resolve().parent.parent
#: GenAI's KV-cache block size on CPU (tokens per block).
BLOCK_SIZE = 32
WARMUP_STEPS = 8


def resolve_ir(model: Path, cache: Path) -> Path:
    """The IR folder of ``model``: itself, or for a ``.gguf`` the IR GenAI writes from it (cached in ``cache``)."""
    from ovserve.engine.settings import IR_MODEL
    from ovserve.store.gguf_export import export_gguf

    if model.is_dir():
        return model
    stat = model.stat()
    target = cache / f"ir-{model.stem}-{stat.st_size}"
    if not (target / IR_MODEL).is_file():
        export_gguf(model, target)
    return target


def last_token_logits(model: Any, axis: int) -> None:
    """Compute the logits of the last token only, as GenAI's pipelines do (they gather or slice the hidden states
    before the output projection): a prompt of N tokens would otherwise compute N rows of logits, and the
    plugin's buffers for them slow the decode steps that follow."""
    from openvino import opset13

    node = model.output(0).get_node().input_value(0).get_node()
    while node.get_type_name() != "MatMul":
        node = node.input_value(0).get_node()
    hidden = node.input_value(0)
    last = opset13.slice(hidden, np.array([-1]), np.array([np.iinfo(np.int64).max]), np.array([1]),
                         np.array([axis]))
    node.input(0).replace_source_output(last.output(0))
    model.validate_nodes_and_infer_types()


class Stepper:
    """A compiled decoder and its infer request, run one sequence at a time: :meth:`prefill`, then :meth:`decode`."""

    def __init__(self, ir: Path, mode: str, config: dict[str, Any], capacity: int) -> None:
        """Compile ``ir`` for CPU in ``mode`` (``paged`` or ``stateful``) with ``config``; ``capacity`` is the
        most tokens the sequence will hold (paged mode allocates that many tokens of KV-cache blocks)."""
        import openvino as ov

        self._ov = ov
        core = ov.Core()
        model = core.read_model(ir / "openvino_model.xml")
        if mode == "paged":
            from openvino._offline_transformations import paged_attention_transformation

            paged_attention_transformation(model, False, False, False, False, False)
        last_token_logits(model, axis=0 if mode == "paged" else 1)
        started = time.perf_counter()
        self.compiled = core.compile_model(model, "CPU", config)
        self.compile_s = time.perf_counter() - started
        self.request = self.compiled.create_infer_request()
        self.mode = mode
        self.past = 0
        if mode == "paged":
            blocks = math.ceil(capacity / BLOCK_SIZE) + 1
            for port in self.compiled.inputs:
                if port.get_any_name().startswith(("key_cache.", "value_cache.")):
                    shape = [blocks] + [dim.get_length() for dim in list(port.get_partial_shape())[1:]]
                    self.request.set_tensor(port.get_any_name(), ov.Tensor(port.get_element_type(), shape))

    def properties(self) -> dict[str, str]:
        """The compiled model's properties that decide the step's speed, and the KV cache's element type."""
        names = ("INFERENCE_PRECISION_HINT", "KV_CACHE_PRECISION", "DYNAMIC_QUANTIZATION_GROUP_SIZE",
                 "INFERENCE_NUM_THREADS", "NUM_STREAMS", "ENABLE_CPU_PINNING", "PERFORMANCE_HINT",
                 "ENABLE_HYPER_THREADING", "SCHEDULING_CORE_TYPE")
        found = {name: str(self.compiled.get_property(name)) for name in names}
        kv = [port for port in self.compiled.inputs if port.get_any_name() == "key_cache.0"]
        if kv:
            found["key_cache.0"] = f"{kv[0].get_element_type().get_type_name()} {kv[0].get_partial_shape()}"
        return found

    def prefill(self, ids: list[int]) -> np.ndarray:
        """Start a new sequence with the prompt ``ids``; return the logits of its last token."""
        self.past = 0
        if self.mode == "stateful":
            self.request.reset_state()
        return self.decode(ids)

    def decode(self, ids: list[int]) -> np.ndarray:
        """Run ``ids`` after the sequence so far; return the logits of the last one (a 1-D float array)."""
        count, past = len(ids), self.past
        context = past + count
        if self.mode == "paged":
            blocks = math.ceil(context / BLOCK_SIZE)
            feed = {"input_ids": np.array(ids, np.int64), "position_ids": np.arange(past, context, dtype=np.int64),
                    "max_context_len": np.array(context, np.int32), "past_lens": np.array([past], np.int32),
                    "subsequence_begins": np.array([0, count], np.int32),
                    "block_indices_begins": np.array([0, blocks], np.int32),
                    "block_indices": np.arange(blocks, dtype=np.int32)}
        else:
            feed = {"input_ids": np.array([ids], np.int64), "attention_mask": np.ones((1, context), np.int64),
                    "position_ids": np.arange(past, context, dtype=np.int64)[None, :],
                    "beam_idx": np.zeros(1, np.int32)}
        for name, value in feed.items():
            self.request.set_tensor(name, self._ov.Tensor(value))
        self.request.infer()
        self.past = context
        logits = self.request.get_output_tensor(0).data
        return logits.reshape(-1, logits.shape[-1])[-1]


def _prompt(context: int, vocab: int) -> list[int]:
    """A ``context``-token prompt: fixed ids spread over the vocabulary (the ids do not change the work)."""
    return [(7919 * (i + 1)) % vocab for i in range(context)]


def sampling_us(logits: np.ndarray) -> dict[str, float]:
    """What a greedy sampler's work on one step's logits costs here (µs): the argmax, and a log-softmax."""
    row = np.ascontiguousarray(logits, dtype=np.float32)
    started = time.perf_counter()
    np.argmax(row)
    argmax = time.perf_counter() - started
    started = time.perf_counter()
    shifted = row - row.max()
    shifted - np.log(np.exp(shifted).sum())
    log_softmax = time.perf_counter() - started
    return {"argmax_us": argmax * 1e6, "log_softmax_us": log_softmax * 1e6}


def run_steps(stepper: Stepper, context: int, steps: int, profile: bool) -> dict[str, Any]:
    """Prefill, warm up, then time ``steps`` greedy decode steps (collecting the executed nodes when profiling)."""
    logits = stepper.prefill(_prompt(context, _vocab(stepper)))
    for _ in range(WARMUP_STEPS):
        logits = stepper.decode([int(np.argmax(logits))])
    walls: list[float] = []
    samples: list[dict[str, float]] = []
    nodes: list[list[sb.NodeTime]] = []
    for _ in range(steps):
        token = int(np.argmax(logits))
        started = time.perf_counter()
        logits = stepper.decode([token])
        walls.append((time.perf_counter() - started) * 1e3)
        samples.append(sampling_us(logits))
        if profile:
            nodes.append(sb.executed(stepper.request.get_profiling_info()))
    return {"wall_ms": walls, "sampling": samples, "nodes": nodes}


def _vocab(stepper: Stepper) -> int:
    return stepper.compiled.outputs[0].get_partial_shape()[-1].get_length()


def _spread(values: list[float]) -> dict[str, float]:
    """Median, min, max and p90 of a list."""
    ordered = sorted(values)
    return {"p50": statistics.median(ordered), "min": ordered[0], "max": ordered[-1],
            "p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]}


def analyse(plain: dict[str, Any], counted: dict[str, Any], stepper: Stepper) -> dict[str, Any]:
    """The report of one profile: wall times, sampling, and the counted steps' nodes grouped three ways."""
    layers = sb.count_layers(counted["nodes"][0])
    steps = [sb.classify(nodes, layers) for nodes in counted["nodes"]]
    parts = sb.by_part(steps)
    sizes = sb.weight_bytes(stepper.compiled.get_runtime_model())
    part_bytes: dict[str, int] = {}
    for item in steps[0]:
        part_bytes[item.part] = part_bytes.get(item.part, 0) + sizes.get(item.node.name, 0)
    for part, row in parts.items():
        row["weight_mb"] = part_bytes.get(part, 0) / 1e6
        row["gb_per_s"] = part_bytes.get(part, 0) / (row["us"] * 1e3) if part_bytes.get(part) and row["us"] else None
    node_sums = [sum(item.node.us for item in step) for step in steps]
    outside = [wall - total / 1e3 for wall, total in zip(counted["wall_ms"], node_sums, strict=True)]
    executed = len(steps[0])
    fixed = sb.fixed_cost_us(steps)
    counted_wall = _spread(counted["wall_ms"])
    return {
        "layers": layers,
        "wall_ms": _spread(plain["wall_ms"]),
        "wall_ms_with_counters": counted_wall,
        "node_sum_ms": statistics.median(node_sums) / 1e3,
        "outside_nodes_ms": statistics.median(outside),
        "executed_nodes": executed,
        "fixed_cost_us": fixed,
        "per_node_overhead_ms": executed * fixed / 1e3,
        "weight_mb": sum(part_bytes.values()) / 1e6,
        "sampling_us": {key: statistics.median(s[key] for s in plain["sampling"])
                        for key in ("argmax_us", "log_softmax_us")},
        "fc_fit": sb.fc_fit(steps, sizes),
        "by_part": parts,
        "by_type": sb.by_type(steps),
        "by_layer": sb.by_layer(steps, layers),
    }


def pipeline_itl(model: Path, plugin_config: dict[str, str], tokens: int) -> dict[str, Any]:
    """One stream on the engine as ovserve loads it (``ContinuousBatchingPipeline``): inter-token p50 (ms)."""
    from benchmarks.engine_direct import Engine, run_level

    engine = Engine(model, plugin_config=plugin_config)
    level = run_level(engine, 1, 2, tokens).to_dict()
    return {"itl_p50_ms": level.get("itl_p50_ms"), "itl_p99_ms": level.get("itl_p99_ms"),
            "tok_s": level.get("tokens_per_s"), "errors": level.get("errors"), "first_error": level.get("first_error")}


def profile(model: Path, mode: str, context: int, steps: int, plugin_config: dict[str, str],
            cache: Path) -> dict[str, Any]:
    """Compile twice (without and with counters), run ``steps`` decode steps on each, and analyse them."""
    from ovserve.engine.settings import plugin_config_for

    ir = resolve_ir(model, cache)
    config: dict[str, Any] = plugin_config_for("CPU", plugin_config)
    capacity = context + WARMUP_STEPS + steps + 1
    plain_stepper = Stepper(ir, mode, config, capacity)
    plain = run_steps(plain_stepper, context, steps, profile=False)
    properties = plain_stepper.properties()
    del plain_stepper
    counted_stepper = Stepper(ir, mode, {**config, "PERF_COUNT": True}, capacity)
    counted = run_steps(counted_stepper, context, steps, profile=True)
    return {"model": str(model), "ir": str(ir), "mode": mode, "context": context, "steps": steps,
            "plugin_config": config, "compiled": properties, **analyse(plain, counted, counted_stepper)}


def _f(value: Any, digits: int = 2) -> Any:
    return round(value, digits) if isinstance(value, float) else value


def render(report: dict[str, Any]) -> str:
    """The profile as markdown: the summary, then by part, by node type and by layer."""
    wall, counted = report["wall_ms"], report["wall_ms_with_counters"]
    lines = [
        f"model {report['model']} ({report['mode']}, {report['layers']} layers, context {report['context']}, "
        f"{report['steps']} steps), CPU {report['machine']['cpu_model']}",
        f"compiled: {', '.join(f'{k}={v}' for k, v in report['compiled'].items())}",
        f"step wall p50 {wall['p50']:.2f} ms (min {wall['min']:.2f}, p90 {wall['p90']:.2f}, max {wall['max']:.2f}); "
        f"with counters p50 {counted['p50']:.2f} ms",
        f"nodes: {report['executed_nodes']} executed, sum of their times {report['node_sum_ms']:.2f} ms, "
        f"outside the nodes {report['outside_nodes_ms']:.2f} ms; fixed cost a node ~{report['fixed_cost_us']:.1f} us"
        f" -> per-node overhead ~{report['per_node_overhead_ms']:.2f} ms a step",
        f"weights read a step {report['weight_mb']:.1f} MB; greedy sampling on the logits: argmax "
        f"{report['sampling_us']['argmax_us']:.0f} us, log-softmax {report['sampling_us']['log_softmax_us']:.0f} us",
    ]
    if report.get("fc_fit"):
        fit = report["fc_fit"]
        lines.append(f"fully connected nodes, fastest = fixed + bytes / bandwidth: fixed {fit['fixed_us']:.1f} us a "
                     f"call ({fit['nodes']} calls: {fit['fixed_ms_a_step']:.2f} ms a step), {fit['gb_per_s']:.1f} GB/s")
    if report.get("pipeline"):
        pipe = report["pipeline"]
        lines.append(f"engine (ContinuousBatchingPipeline) one stream: ITL p50 {pipe['itl_p50_ms']:.2f} ms, "
                     f"{pipe['tok_s']:.1f} tok/s")
    total = report["node_sum_ms"] * 1e3
    part_rows = [[part, row["nodes"], _f(row["us"] / 1e3, 3), _f(100 * row["us"] / total, 1),
                  _f(row["min_us"] / 1e3, 3), _f(row["weight_mb"], 1), _f(row["gb_per_s"], 1)]
                 for part, row in report["by_part"].items()]
    floor = sum(row["min_us"] for row in report["by_part"].values()) / 1e3
    part_rows.append(["all", report["executed_nodes"], _f(report["node_sum_ms"], 3), 100.0, _f(floor, 3),
                      _f(report["weight_mb"], 1), None])
    lines += ["", markdown(["part", "nodes", "ms (p50)", "% of nodes", "ms (fastest each)", "weights MB",
                            "GB/s (p50)"], part_rows)]
    type_rows = [[row["node_type"], row["kernel"], row["nodes"], _f(row["us"] / 1e3, 3)]
                 for row in report["by_type"]]
    lines += ["", markdown(["node type", "kernel", "nodes", "ms"], type_rows)]
    layer_rows = [[row["layer"], _f(row["us"] / 1e3, 3)] + [_f(row.get(part, 0.0), 0) for part in sb.PARTS]
                  for row in report["by_layer"]]
    lines += ["", markdown(["layer", "ms"] + [f"{part} us" for part in sb.PARTS], layer_rows)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Profile one decode step and print the tables (and write the JSON with ``--json-out``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=MODEL_PATH, help=".gguf file or OpenVINO IR folder")
    parser.add_argument("--mode", choices=("paged", "stateful"), default="paged",
                        help="paged: as the engine (ContinuousBatchingPipeline); stateful: as LLMPipeline")
    parser.add_argument("--context", type=int, default=128, help="prompt tokens before the measured steps")
    parser.add_argument("--steps", type=int, default=64, help="decode steps measured (each way)")
    parser.add_argument("--plugin-config", action="append", default=[], metavar="KEY=VALUE",
                        help="a CPU plugin property over ovserve's defaults for this CPU")
    parser.add_argument("--pipeline", action="store_true", help="also time one stream on the engine itself")
    parser.add_argument("--cache", type=Path, default=REPO / "benchmarks" / "results",
                        help="where the IR written from a .gguf is kept")
    parser.add_argument("--json-out", type=Path, default=None, help="write the whole report here")
    args = parser.parse_args(argv)
    if args.context < 1 or args.steps < 1:
        parser.error("--context and --steps must be at least 1")
    config = _parse_plugin_config(args.plugin_config)
    report = {"machine": machine_info(REPO),
              **profile(args.model, args.mode, args.context, args.steps, config, args.cache)}
    if args.pipeline:
        report["pipeline"] = pipeline_itl(args.model, config, args.steps)
    print(render(report))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
