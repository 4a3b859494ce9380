"""Where one decode step's time goes: the CPU plugin's per-node counters, grouped.

:func:`classify` walks the executed nodes in execution order (``get_profiling_info`` lists them so) and gives each
a layer and a part of the model, from the node types alone, so that it holds for any decoder-only model the plugin
compiles with ``RMS`` norms: fully connected nodes between a layer's input norm and its attention node are its
q/k/v projections (q/k norms in between change nothing), the first after the attention node the output projection
of attention, those after the next norm (post-attention) the MLP, and those after the norm that follows the last
layer the output projection (the logits). :func:`summarize` turns one step's nodes into the tables the
report prints.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

ATTENTION_TYPES = ("PagedAttentionExtension", "PagedAttention", "ScaledDotProductAttention",
                   "ScaledDotProductAttentionWithKVCache", "SDPA")
#: The parts of the model a node is counted in, in the order the report lists them.
PARTS = ("embedding", "norms", "attention q/k/v", "rope", "attention kernel", "attention out", "mlp",
         "output projection", "other small nodes")


@dataclass(frozen=True)
class NodeTime:
    """One executed node of one inference: its name, types and time in microseconds."""

    name: str
    node_type: str
    exec_type: str
    us: float


@dataclass(frozen=True)
class Classified:
    """A node with its layer (-1: before the first layer; ``layers``: after the last) and part of the model."""

    node: NodeTime
    layer: int
    part: str


#: Entries of the counters that are not nodes doing work: inputs, outputs and constants.
_NOT_NODES = ("Parameter", "Result", "Constant", "Input", "Output")


def executed(profiling_info: Iterable[object]) -> list[NodeTime]:
    """The nodes of OpenVINO's ``get_profiling_info()`` that can run, in its order.

    The CPU plugin counts whole microseconds and marks a node that took less than one ``NOT_RUN``, so such nodes
    are kept (at 0 µs); only the inputs, outputs, constants and the reshapes it never runs (done in place) are
    left out."""
    nodes = []
    for info in profiling_info:
        ran = str(info.status).endswith(".EXECUTED")
        if info.node_type in _NOT_NODES or (info.node_type == "Reshape" and not ran):
            continue
        nodes.append(NodeTime(info.node_name, info.node_type, info.exec_type, info.real_time.total_seconds() * 1e6))
    return nodes


def _is_fc(node: NodeTime) -> bool:
    return node.node_type.startswith("FullyConnected") or node.node_type == "MatMul"


def classify(nodes: Sequence[NodeTime], layers: int) -> list[Classified]:
    """Give every node its layer and part (see the module's docstring)."""
    phase, layer, attentions = "embedding", -1, 0
    result = []
    for node in nodes:
        fc = _is_fc(node)
        if node.node_type == "RMS":
            if phase == "embedding" or (phase == "mlp"):
                phase, layer = "q/k/v", attentions  # a layer's input norm, or the final norm (layer == layers)
            elif phase == "attention out":
                phase = "mlp"  # the post-attention norm; q/k norms inside "q/k/v" change nothing
            part = "norms"
        elif node.node_type in ATTENTION_TYPES:
            phase, layer = "attention", attentions
            attentions += 1
            part = "attention kernel"
        elif node.node_type == "RoPE":
            part = "rope"
        elif phase == "embedding" and node.node_type.startswith("Gather"):
            part = "embedding"
        elif fc and phase == "q/k/v":
            part = "output projection" if layer >= layers else "attention q/k/v"
        elif fc and phase == "attention":
            phase = part = "attention out"
        elif fc:
            phase = part = "mlp"
        else:
            part = "other small nodes"
        result.append(Classified(node, layer, part))
    return result


def count_layers(nodes: Sequence[NodeTime]) -> int:
    """How many decoder layers ran: the attention nodes of one step."""
    return sum(1 for node in nodes if node.node_type in ATTENTION_TYPES)


def by_part(steps: Sequence[Sequence[Classified]]) -> dict[str, dict[str, float]]:
    """Per part: nodes a step, the median over steps of their summed time (µs), and the sum of each node's
    fastest time over the steps (``min_us``: on a shared machine, the closest to what the kernels cost alone)."""
    totals: dict[str, list[float]] = defaultdict(list)
    counts: dict[str, int] = {}
    fastest: dict[tuple[str, str], float] = {}
    for step in steps:
        sums: dict[str, float] = dict.fromkeys(PARTS, 0.0)
        step_counts: dict[str, int] = dict.fromkeys(PARTS, 0)
        for item in step:
            sums[item.part] += item.node.us
            step_counts[item.part] += 1
            key = (item.part, item.node.name)
            fastest[key] = min(fastest.get(key, math.inf), item.node.us)
        for part in PARTS:
            totals[part].append(sums[part])
        counts = step_counts
    return {part: {"nodes": counts.get(part, 0), "us": statistics.median(totals[part]),
                   "min_us": sum(us for (name, _), us in fastest.items() if name == part)} for part in PARTS}


def by_type(steps: Sequence[Sequence[Classified]]) -> list[dict[str, object]]:
    """Per (node type, kernel): nodes a step and the median summed time (µs), largest first."""
    totals: dict[tuple[str, str], list[float]] = defaultdict(list)
    counts: dict[tuple[str, str], int] = {}
    for step in steps:
        sums: dict[tuple[str, str], float] = defaultdict(float)
        step_counts: dict[tuple[str, str], int] = defaultdict(int)
        for item in step:
            key = (item.node.node_type, item.node.exec_type)
            sums[key] += item.node.us
            step_counts[key] += 1
        for key, value in sums.items():
            totals[key].append(value)
        counts = dict(step_counts)
    rows = [{"node_type": key[0], "kernel": key[1], "nodes": counts.get(key, 0),
             "us": statistics.median(values)} for key, values in totals.items()]
    return sorted(rows, key=lambda row: -float(row["us"]))


def by_layer(steps: Sequence[Sequence[Classified]], layers: int) -> list[dict[str, object]]:
    """Per layer (``before`` the first, ``0`` ..., ``head`` after the last): median summed time (µs) by part."""
    rows = []
    for layer in range(-1, layers + 1):
        per_part: dict[str, list[float]] = defaultdict(list)
        for step in steps:
            sums: dict[str, float] = defaultdict(float)
            for item in step:
                if item.layer == layer:
                    sums[item.part] += item.node.us
            for part in PARTS:
                per_part[part].append(sums.get(part, 0.0))
        medians = {part: statistics.median(values) for part, values in per_part.items()}
        name = "before" if layer < 0 else "head" if layer >= layers else str(layer)
        rows.append({"layer": name, "us": sum(medians.values()),
                     **{part: value for part, value in medians.items() if value}})
    return rows


def fixed_cost_us(steps: Sequence[Sequence[Classified]]) -> float:
    """A node's fixed cost, estimated as the median time of the small nodes (reshapes, element-wise ops and
    conversions on one token's activations: their arithmetic is a few hundred values)."""
    small = [item.node.us for step in steps for item in step if item.part == "other small nodes"]
    return statistics.median(small) if small else 0.0


def weight_bytes(runtime_model: object) -> Mapping[str, int]:
    """Bytes of constant inputs (weights, scales, zero points) of each fully connected node of the compiled
    model's runtime graph, by node name: what one step has to read from memory for it."""
    sizes: dict[str, int] = {}
    for op in runtime_model.get_ordered_ops():  # type: ignore[attr-defined]
        layer_type = op.get_rt_info()["layerType"].astype(str)
        if not layer_type.startswith("FullyConnected"):
            continue
        total = 0
        for port in op.inputs()[1:]:
            source = port.get_source_output().get_node()
            if source.get_rt_info()["layerType"].astype(str) != "Const" or not port.get_partial_shape().is_static:
                continue
            elements = 1
            for dim in port.get_shape():
                elements *= dim
            total += elements * port.get_element_type().bitwidth // 8
        sizes[op.get_friendly_name()] = total
    return sizes


def fc_fit(steps: Sequence[Sequence[Classified]], sizes: Mapping[str, int]) -> dict[str, float] | None:
    """Fit each fully connected node's fastest time over the steps to ``fixed + bytes / bandwidth`` (least squares):
    the fixed cost of one call (µs) and the rate at which its weights stream in (GB/s), over nodes of every size
    (q/k/v, MLP, output projection). None with fewer than two sizes."""
    fastest: dict[str, float] = {}
    for step in steps:
        for item in step:
            if _is_fc(item.node) and sizes.get(item.node.name):
                fastest[item.node.name] = min(fastest.get(item.node.name, math.inf), item.node.us)
    if len({sizes[name] for name in fastest}) < 2:
        return None
    names = sorted(fastest)
    slope, intercept = np.polyfit([sizes[name] for name in names], [fastest[name] for name in names], 1)
    return {"fixed_us": float(intercept), "gb_per_s": float(1e-3 / slope) if slope > 0 else math.inf,
            "nodes": len(names), "fixed_ms_a_step": float(intercept) * len(names) / 1e3}
