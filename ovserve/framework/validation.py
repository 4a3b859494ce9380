"""Turn a graph config into a :class:`GraphSpec`, or fail with every problem found.

Checks, each reported with file:line:column and the node name:
unknown calculators (with a suggestion), port tags the calculator does not declare and required ones
left out, streams and side packets with no producer or with two, cycles not marked ``back_edge``,
connected ports whose types disagree (naming both ends and both types), invalid options, and
unknown input stream handlers. Subgraph nodes are expanded first (``node_drafts`` reads and checks the
nodes one by one; this module wires them into a graph).
"""

from __future__ import annotations

import inspect
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ovserve.framework.calculator import Calculator
from ovserve.framework.config import (
    LoadedGraphConfig,
    StreamRef,
    load_graph_config,
    parse_graph_config,
    parse_stream_refs,
    port_key,
)
from ovserve.framework.errors import GraphConfigError, Problem
from ovserve.framework.node_drafts import KINDS, Draft, NodeReader
from ovserve.framework.ports import Port, PortKind, type_name, types_compatible
from ovserve.framework.registry import Registry
from ovserve.framework.schema import did_you_mean
from ovserve.framework.spec import (
    DEFAULT_QUEUE_SIZE,
    GRAPH_OUTPUT,
    Consumer,
    GraphSpec,
    InputSpec,
    NodeSpec,
    OutputSpec,
    ResourceSpec,
)
from ovserve.framework.textproto import SourceLocation

__all__ = ["build_spec", "graph_from_text", "load_graph"]

Located = list[tuple[StreamRef, SourceLocation | None]]
#: What produces a stream or side packet: (a description for messages, its type, where it is written).
Producers = dict[str, list[tuple[str, Any, SourceLocation | None]]]


@dataclass
class _Streams:
    """How the nodes' streams connect: who writes each stream, who reads it, and the node-to-node edges."""

    producers: Producers = field(default_factory=lambda: defaultdict(list))
    consumers: dict[str, list[Consumer]] = field(default_factory=lambda: defaultdict(list))
    consumer_names: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    edges: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    node_inputs: dict[str, list[InputSpec]] = field(default_factory=dict)
    graph_outputs: dict[str, str] = field(default_factory=dict)


def _port_of(draft: Draft, kind: PortKind, ref: StreamRef) -> Port | None:
    assert draft.registration is not None
    return draft.registration.calculator.contract.of(kind).get(ref.tag)


class _Validator(NodeReader):
    """Builds one graph's spec: reads its nodes (``NodeReader``), then wires streams and side packets."""

    def build(self, loaded: LoadedGraphConfig) -> GraphSpec:
        graph_refs = self.graph_refs(loaded)
        drafts = self.expand(self.drafts(loaded))
        calc_drafts, resource_drafts, node_options = self.check_nodes(drafts)
        streams = self.wire_streams(graph_refs, calc_drafts)
        self.check_cycles(calc_drafts, streams.edges)
        side_producers, side_consumers = self.wire_side_packets(graph_refs, drafts, resource_drafts)
        resource_order = self.order_resources(resource_drafts)
        for name in self.overrides:
            self.problem(f"options were given for node '{name}', but the graph has no such node; its nodes: "
                         f"{', '.join(d.name for d in drafts)}", None)
        if self.problems:
            raise GraphConfigError(self.problems)
        nodes = [self.node_spec(draft, streams, node_options[draft.name]) for draft in calc_drafts]
        if self.problems:
            raise GraphConfigError(self.problems)
        inputs = {ref.port: ref.name for ref, _ in graph_refs[PortKind.INPUT]}
        return GraphSpec(
            source=loaded.source,
            base_path=loaded.base_path,
            nodes=tuple(nodes),
            resources=tuple(_resource_spec(d, node_options[d.name]) for d in resource_order),
            inputs=inputs,
            input_consumers={port: tuple(streams.consumers.get(name, ())) for port, name in inputs.items()},
            outputs=streams.graph_outputs,
            input_side_packets={ref.port: ref.name for ref, _ in graph_refs[PortKind.SIDE_INPUT]},
            queue_size=loaded.config.max_queue_size if loaded.config.max_queue_size > 0 else DEFAULT_QUEUE_SIZE,
            streams={name: (found[0][0], tuple(streams.consumer_names.get(name, ())))
                     for name, found in streams.producers.items()},
            side_packets={name: (found[0][0], tuple(side_consumers.get(name, ())))
                          for name, found in side_producers.items()},
            warnings=tuple(self.warnings),
        )

    def graph_refs(self, loaded: LoadedGraphConfig) -> dict[PortKind, Located]:
        """The graph's own input and output streams and side packets, with where each is written."""
        graph_refs: dict[PortKind, Located] = {}
        for kind in KINDS:
            try:
                refs = parse_stream_refs(getattr(loaded.config, kind.value))
            except ValueError as error:
                self.problem(f"graph {kind.value}: {error}", loaded.location(kind.value))
                refs = []
            graph_refs[kind] = [(r, loaded.location(kind.value, i)) for i, r in enumerate(refs)]
        return graph_refs

    def check_nodes(self, drafts: list[Draft]) -> tuple[list[Draft], list[Draft], dict[str, BaseModel]]:
        """Check each node's ports and options; split calculators from resources."""
        calc_drafts: list[Draft] = []
        resource_drafts: list[Draft] = []
        node_options: dict[str, BaseModel] = {}
        for draft in drafts:
            assert draft.registration is not None
            target = draft.registration.calculator
            self.check_ports(draft, target)
            options = self.check_options(draft, target)
            if options is not None:
                node_options[draft.name] = options
            if draft.registration.kind == "resource":
                resource_drafts.append(draft)
                continue
            if draft.refs[PortKind.SIDE_OUTPUT]:
                self.problem(f"calculator '{target.name}' cannot produce side packets; side packets come "
                             f"from resources (subclasses of Resource)",
                             draft.refs[PortKind.SIDE_OUTPUT][0][1], draft.name)
            calc_drafts.append(draft)
        return calc_drafts, resource_drafts, node_options

    # --- streams ----------------------------------------------------------------------------------

    def wire_streams(self, graph_refs: dict[PortKind, Located], calc_drafts: list[Draft]) -> _Streams:
        streams = _Streams()
        producer_node = self.stream_producers(graph_refs, calc_drafts, streams.producers)
        node_index = {d.name: i for i, d in enumerate(calc_drafts)}
        for draft in calc_drafts:
            streams.node_inputs[draft.name] = self.node_inputs(draft, node_index[draft.name], streams,
                                                               producer_node)
        known_streams = list(streams.producers)
        for i, (ref, location) in enumerate(graph_refs[PortKind.OUTPUT]):
            if ref.name not in streams.producers and ref.name not in self.unresolved_streams:
                self.problem(f"graph output_stream '{ref}' is produced by no node."
                             f"{did_you_mean(ref.name, known_streams)}", location)
            streams.consumers[ref.name].append((GRAPH_OUTPUT, i))
            streams.consumer_names[ref.name].append(f"graph output '{ref.port}'")
            streams.graph_outputs[ref.port] = ref.name
        for ref, location in graph_refs[PortKind.INPUT]:
            if not streams.consumers.get(ref.name):
                self.warnings.append(Problem(f"graph input_stream '{ref}' is read by no node: what the host sends "
                                             f"there is dropped", location))
        return streams

    def stream_producers(self, graph_refs: dict[PortKind, Located], calc_drafts: list[Draft],
                         producers: Producers) -> dict[str, str]:
        """Fill ``producers`` (reporting streams written twice); return each stream's first producing node."""
        for ref, location in graph_refs[PortKind.INPUT]:
            producers[ref.name].append((f"graph input_stream '{ref}'", Any, location))
        producer_node: dict[str, str] = {}
        for draft in calc_drafts:
            for ref, location in draft.refs[PortKind.OUTPUT]:
                producer_node.setdefault(ref.name, draft.name)
                port = _port_of(draft, PortKind.OUTPUT, ref)
                producers[ref.name].append((f"node '{draft.name}' output '{ref.port}'",
                                            port.type if port else Any, location))
        for name, found in producers.items():
            if len(found) > 1:
                self.problem(f"stream '{name}' has {len(found)} producers: "
                             + " and ".join(f"{what} ({loc})" for what, _, loc in found)
                             + "; every stream must have exactly one", found[1][2])
        return producer_node

    def node_inputs(self, draft: Draft, index: int, streams: _Streams,
                    producer_node: dict[str, str]) -> list[InputSpec]:
        """One node's inputs, checked against what produces each stream, and recorded as consumers and edges."""
        specs: list[InputSpec] = []
        for ref, location in draft.refs[PortKind.INPUT]:
            port = _port_of(draft, PortKind.INPUT, ref)
            back_edge = ref.port in draft.back_edges
            found = streams.producers.get(ref.name)
            if not found and ref.name in self.unresolved_streams:
                pass  # its producer's unknown calculator is the problem, already reported
            elif not found:
                self.problem(f"input '{ref.port}' reads stream '{ref.name}', which nothing produces."
                             f"{did_you_mean(ref.name, list(streams.producers))}", location, draft.name)
            elif port is not None and not types_compatible(found[0][1], port.type):
                self.problem(f"input '{ref.port}' takes {port.type_name} but stream '{ref.name}' carries "
                             f"{type_name(found[0][1])} from {found[0][0]}", location, draft.name)
            streams.consumers[ref.name].append((index, len(specs)))
            streams.consumer_names[ref.name].append(f"{draft.name}.{ref.port}")
            if ref.name in producer_node and not back_edge:
                streams.edges[producer_node[ref.name]].add(draft.name)
            specs.append(InputSpec(ref.port, ref.name, back_edge))
        return specs

    def node_spec(self, draft: Draft, streams: _Streams, options: BaseModel) -> NodeSpec:
        target = draft.registration.calculator  # type: ignore[union-attr]
        assert issubclass(target, Calculator)
        inputs = streams.node_inputs[draft.name]
        outputs = tuple(OutputSpec(ref.port, ref.name, tuple(streams.consumers.get(ref.name, ())))
                        for ref, _ in draft.refs[PortKind.OUTPUT])
        connected = {output.port for output in outputs}
        # Declared outputs left unconnected still accept sends (and drop them).
        outputs += tuple(OutputSpec(port_key(tag, 0), "", ()) for tag in target.contract.outputs
                         if port_key(tag, 0) not in connected)
        sync = self.sync_sets(draft, inputs, target.input_stream_handler)
        executor, threads = self.executor(draft, target)
        return NodeSpec(
            name=draft.name, calculator=target, options=options, inputs=tuple(inputs),
            outputs=outputs, side_inputs={r.port: r.name for r, _ in draft.refs[PortKind.SIDE_INPUT]},
            sync_sets=sync, location=draft.loc(), base_path=draft.base_path,
            process_is_async=inspect.iscoroutinefunction(target.process), executor=executor,
            executor_threads=threads, max_in_flight=max(draft.config.max_in_flight, 0),
        )

    def check_cycles(self, drafts: list[Draft], edges: dict[str, set[str]]) -> None:
        state: dict[str, int] = {}
        path: list[str] = []
        by_name = {d.name: d for d in drafts}

        def visit(name: str) -> bool:
            state[name] = 1
            path.append(name)
            for nxt in sorted(edges.get(name, ())):
                if state.get(nxt) == 1:
                    cycle = [*path[path.index(nxt):], nxt]
                    self.problem(
                        f"cycle {' -> '.join(cycle)} has no back edge; mark the input that closes it with "
                        f"input_stream_info {{ tag_index: \"TAG\" back_edge: true }}",
                        by_name[nxt].loc(), nxt)
                    return True
                if state.get(nxt) is None and visit(nxt):
                    return True
            path.pop()
            state[name] = 2
            return False

        for draft in drafts:
            if state.get(draft.name) is None and visit(draft.name):
                return

    # --- side packets -----------------------------------------------------------------------------

    def wire_side_packets(self, graph_refs: dict[PortKind, Located], drafts: list[Draft],
                          resource_drafts: list[Draft]) -> tuple[Producers, dict[str, list[str]]]:
        """Side packets come from the host or from resources; check each reader against its producer."""
        side_producers: Producers = defaultdict(list)
        for ref, location in graph_refs[PortKind.SIDE_INPUT]:
            side_producers[ref.name].append((f"graph input_side_packet '{ref}'", Any, location))
        for draft in resource_drafts:
            for ref, location in draft.refs[PortKind.SIDE_OUTPUT]:
                port = _port_of(draft, PortKind.SIDE_OUTPUT, ref)
                side_producers[ref.name].append((f"resource '{draft.name}' output '{ref.port}'",
                                                 port.type if port else Any, location))
        for name, found in side_producers.items():
            if len(found) > 1:
                self.problem(f"side packet '{name}' has {len(found)} producers: "
                             + " and ".join(f"{what} ({loc})" for what, _, loc in found), found[1][2])
        side_consumers: dict[str, list[str]] = defaultdict(list)
        for draft in drafts:
            for ref, location in draft.refs[PortKind.SIDE_INPUT]:
                port = _port_of(draft, PortKind.SIDE_INPUT, ref)
                found = side_producers.get(ref.name)
                side_consumers[ref.name].append(f"{draft.name}.{ref.port}")
                if not found:
                    self.problem(f"input_side_packet '{ref.port}' reads side packet '{ref.name}', which no "
                                 f"resource produces and the graph does not declare as input_side_packet."
                                 f"{did_you_mean(ref.name, side_producers)}", location, draft.name)
                elif port is not None and not types_compatible(found[0][1], port.type):
                    self.problem(f"input_side_packet '{ref.port}' takes {port.type_name} but side packet "
                                 f"'{ref.name}' is {type_name(found[0][1])} from {found[0][0]}",
                                 location, draft.name)
        return side_producers, side_consumers

    def order_resources(self, drafts: list[Draft]) -> list[Draft]:
        """Resources in an order where each comes after those whose side packets it reads."""
        produced_by = {ref.name: d.name for d in drafts for ref, _ in d.refs[PortKind.SIDE_OUTPUT]}
        by_name = {d.name: d for d in drafts}
        order: list[Draft] = []
        state: dict[str, int] = {}

        def visit(draft: Draft) -> None:
            if state.get(draft.name) == 2:
                return
            if state.get(draft.name) == 1:
                self.problem("resources depend on each other in a cycle through side packets",
                             draft.loc(), draft.name)
                return
            state[draft.name] = 1
            for ref, _ in draft.refs[PortKind.SIDE_INPUT]:
                producer = produced_by.get(ref.name)
                if producer is not None:
                    visit(by_name[producer])
            state[draft.name] = 2
            order.append(draft)

        for draft in drafts:
            visit(draft)
        return order


def _resource_spec(draft: Draft, options: BaseModel) -> ResourceSpec:
    return ResourceSpec(
        name=draft.name, resource=draft.registration.calculator,  # type: ignore[union-attr, arg-type]
        options=options,
        side_inputs={r.port: r.name for r, _ in draft.refs[PortKind.SIDE_INPUT]},
        side_outputs={r.port: r.name for r, _ in draft.refs[PortKind.SIDE_OUTPUT]},
        location=draft.loc(), base_path=draft.base_path,
    )


def build_spec(loaded: LoadedGraphConfig, registry: Registry,
               overrides: Mapping[str, Mapping[str, Any]] | None = None) -> GraphSpec:
    """Expand subgraphs and validate; raises :class:`GraphConfigError` listing every problem.

    ``overrides`` sets option fields by node name (``{"engine": {"models_path": "/m.gguf"}}``), over
    what the file says: how the command line configures a ready-made graph."""
    return _Validator(registry, overrides).build(loaded)


def load_graph(path: str | Path, registry: Registry,
               overrides: Mapping[str, Mapping[str, Any]] | None = None) -> GraphSpec:
    """Read, parse and validate a ``.pbtxt`` graph file."""
    return build_spec(load_graph_config(path), registry, overrides)


def graph_from_text(text: str, registry: Registry, source: str = "<string>",
                    base_path: Path | None = None) -> GraphSpec:
    """Parse and validate graph text (handy in tests and for graphs built in code)."""
    return build_spec(parse_graph_config(text, source, base_path), registry)
