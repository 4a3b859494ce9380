"""Draw a validated graph as Mermaid or Graphviz DOT text (``ovserve graph show``), with what runs where: a node
whose ``process`` runs in a thread pool names it, and a resource whose work runs in a process of its own names that
(``Resource.runs_in``); the rest runs on the server's event loop."""

from __future__ import annotations

from ovserve.framework.spec import GRAPH_OUTPUT, GraphSpec, NodeSpec, ResourceSpec

DOT_NEWLINE = "\\n"


def _node_where(node: NodeSpec) -> str:
    return f"thread pool '{node.executor}'" if node.executor else ""


def _resource_where(resource: ResourceSpec) -> str:
    return getattr(resource.resource, "runs_in", "")


def _label(name: str, kind: str, where: str, newline: str) -> str:
    return newline.join(part for part in (name, kind, f"({where})" if where else "") if part)


def _edges(spec: GraphSpec) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """(stream edges, side-packet edges) as (from id, to id, label)."""
    streams: list[tuple[str, str, str]] = []

    def target(node: int, index: int) -> str:
        return f"out{index}" if node == GRAPH_OUTPUT else f"n{node}"

    for port, consumers in spec.input_consumers.items():
        for node, index in consumers:
            streams.append((f"in_{port or 'x'}", target(node, index), spec.inputs[port]))
    for i, node in enumerate(spec.nodes):
        for output in node.outputs:
            for consumer, index in output.consumers:
                label = output.stream
                if consumer != GRAPH_OUTPUT and spec.nodes[consumer].inputs[index].back_edge:
                    label += " (back edge)"
                streams.append((f"n{i}", target(consumer, index), label))
    side: list[tuple[str, str, str]] = []
    producers: dict[str, str] = {name: f"side_{port or name}" for port, name in spec.input_side_packets.items()}
    for i, resource in enumerate(spec.resources):
        for name in resource.side_outputs.values():
            producers[name] = f"r{i}"
    for i, resource in enumerate(spec.resources):
        for name in resource.side_inputs.values():
            side.append((producers[name], f"r{i}", name))
    for i, node in enumerate(spec.nodes):
        for name in node.side_inputs.values():
            side.append((producers[name], f"n{i}", name))
    return streams, side


def to_mermaid(spec: GraphSpec) -> str:
    """A Mermaid ``flowchart``: graph streams as rounded boxes, resources as parallelograms."""
    lines = ["flowchart LR"]
    for port, name in spec.inputs.items():
        lines.append(f'  in_{port or "x"}(["input {port}:{name}"])')
    for index, (port, name) in enumerate(spec.outputs.items()):
        lines.append(f'  out{index}(["output {port}:{name}"])')
    for port, name in spec.input_side_packets.items():
        lines.append(f'  side_{port or name}[("side packet {port}:{name}")]')
    for i, resource in enumerate(spec.resources):
        lines.append(f'  r{i}[/"{_label(resource.name, resource.resource.name, _resource_where(resource), "<br/>")}"/]')
    for i, node in enumerate(spec.nodes):
        lines.append(f'  n{i}["{_label(node.name, node.calculator.name, _node_where(node), "<br/>")}"]')
    streams, side = _edges(spec)
    lines += [f'  {a} -->|"{label}"| {b}' for a, b, label in streams]
    lines += [f'  {a} -.->|"{label}"| {b}' for a, b, label in side]
    return "\n".join(lines) + "\n"


def to_dot(spec: GraphSpec) -> str:
    """A Graphviz digraph: nodes as boxes, resources as parallelograms, side packets dashed."""
    lines = ["digraph graph_config {", "  rankdir=LR;", '  node [fontname="Helvetica"];']
    for port, name in spec.inputs.items():
        lines.append(f'  in_{port or "x"} [label="input {port}:{name}", shape=oval];')
    for index, (port, name) in enumerate(spec.outputs.items()):
        lines.append(f'  out{index} [label="output {port}:{name}", shape=oval];')
    for port, name in spec.input_side_packets.items():
        lines.append(f'  side_{port or name} [label="side packet {port}:{name}", shape=cylinder];')
    for i, resource in enumerate(spec.resources):
        label = _label(resource.name, resource.resource.name, _resource_where(resource), DOT_NEWLINE)
        lines.append(f'  r{i} [label="{label}", shape=parallelogram];')
    for i, node in enumerate(spec.nodes):
        label = _label(node.name, node.calculator.name, _node_where(node), DOT_NEWLINE)
        lines.append(f'  n{i} [label="{label}", shape=box];')
    streams, side = _edges(spec)
    lines += [f'  {a} -> {b} [label="{label}"];' for a, b, label in streams]
    lines += [f'  {a} -> {b} [label="{label}", style=dashed];' for a, b, label in side]
    lines.append("}")
    return "\n".join(lines) + "\n"
