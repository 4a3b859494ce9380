"""Reading a graph config's nodes on their way to specs: each node becomes a :class:`Draft` (its connections, options
and where it was written), subgraph nodes are expanded into their renamed inner nodes, and each node's ports,
options, executor and input sync sets are checked against its calculator. Problems are collected, not raised."""

from __future__ import annotations

import inspect
import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ovserve.framework.calculator import Calculator, Resource
from ovserve.framework.config import (
    InputStreamHandlerConfig,
    LoadedGraphConfig,
    NodeConfig,
    StreamRef,
    parse_stream_refs,
    parse_tag_index,
    port_key,
)
from ovserve.framework.errors import GraphConfigError, Problem
from ovserve.framework.executors import DEFAULT_EXECUTOR, declared_executors
from ovserve.framework.ports import PortKind
from ovserve.framework.registry import Registration, Registry
from ovserve.framework.schema import did_you_mean, validate_message
from ovserve.framework.spec import InputSpec
from ovserve.framework.textproto import Field, Identifier, Message, SourceLocation

HANDLERS = ("DefaultInputStreamHandler", "ImmediateInputStreamHandler", "SyncSetInputStreamHandler")
log = logging.getLogger("ovserve.graph")

KINDS = (PortKind.INPUT, PortKind.OUTPUT, PortKind.SIDE_INPUT, PortKind.SIDE_OUTPUT)
_MAX_SUBGRAPH_DEPTH = 16


@dataclass
class Draft:
    """A node on its way to a spec: its config, where it was written, its (renamed) connections."""

    name: str
    config: NodeConfig
    loaded: LoadedGraphConfig
    index: int
    refs: dict[PortKind, list[tuple[StreamRef, SourceLocation | None]]]
    back_edges: dict[str, SourceLocation | None] = field(default_factory=dict)
    options: Field | None = None
    registration: Registration | None = None
    #: Relative paths in options resolve against this: the graph file of the outermost node.
    base_path: Path = Path()

    def loc(self, *path: str | int) -> SourceLocation | None:
        return self.loaded.location("node", self.index, *path)


_COMMAND_LINE = SourceLocation("<overrides>", 1, 1)


def _override_field(name: str, value: Any) -> Field:
    """An option set from the command line as the field a graph file would have: a dict is a message, a list of
    dicts a repeated message (``voices { name path }``)."""
    return Field(name, _override_value(value), _COMMAND_LINE)


def _override_value(value: Any) -> Any:
    if isinstance(value, bool):
        return Identifier("true" if value else "false")
    if isinstance(value, dict):
        return Message(_COMMAND_LINE, [_override_field(k, v) for k, v in value.items()])
    if isinstance(value, list):
        return [_override_value(item) for item in value]
    return value


class NodeReader:
    """Reads and checks nodes one at a time, collecting every problem in ``problems`` (and ``warnings``); the graph
    validator builds on it to wire the nodes together."""

    def __init__(self, registry: Registry, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.registry = registry
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.overrides = dict(overrides or {})
        #: Streams written by nodes whose calculator is unknown: already reported, not reported again.
        self.unresolved_streams: set[str] = set()

    def problem(self, message: str, location: SourceLocation | None, node: str | None = None) -> None:
        self.problems.append(Problem(message, location, node))

    # --- reading nodes ----------------------------------------------------------------------------

    def drafts(self, loaded: LoadedGraphConfig) -> list[Draft]:
        drafts: list[Draft] = []
        used: dict[str, int] = defaultdict(int)
        explicit = {n.name for n in loaded.config.node if n.name}
        for index, node in enumerate(loaded.config.node):
            name = node.name
            if not name:
                base = node.calculator.rsplit(":", 1)[-1]
                used[base] += 1
                name = base if used[base] == 1 and base not in explicit else f"{base}_{used[base]}"
            elif name in {d.name for d in drafts}:
                self.problem(f"node name '{name}' is used twice; node names must be unique",
                             loaded.location("node", index, "name"), name)
            draft = Draft(name, node, loaded, index, {}, base_path=loaded.base_path)
            for kind in KINDS:
                draft.refs[kind] = self.refs(draft, kind, getattr(node, kind.value))
            for info_index, info in enumerate(node.input_stream_info):
                if info.back_edge:
                    key = port_key(*parse_tag_index(info.tag_index))
                    draft.back_edges[key] = draft.loc("input_stream_info", info_index)
            draft.options = self.options_field(draft)
            drafts.append(draft)
        return drafts

    def executor(self, draft: Draft, target: type[Calculator]) -> tuple[str, int]:
        """(the thread pool the node's plain ``process`` runs in, or "" for the event loop; its threads)."""
        declared = declared_executors(draft.loaded.config.executor)
        name = draft.config.executor
        if name and name not in declared and name != DEFAULT_EXECUTOR:
            self.problem(f"executor '{name}' is not declared; declare it in the graph, e.g. executor {{ name: "
                         f"\"{name}\" type: \"ThreadPoolExecutor\" }} (declared: {', '.join(declared) or 'none'})",
                         draft.loc("executor"), draft.name)
            return "", 0
        if inspect.iscoroutinefunction(target.process):
            if name:
                log.warning("node '%s': %s.process is async, so it runs on the event loop; executor '%s' is not "
                            "used", draft.name, target.name, name)
            return "", 0
        if name or target.runs_in_thread:
            return name or DEFAULT_EXECUTOR, declared.get(name or DEFAULT_EXECUTOR, 0)
        return "", 0

    def refs(self, draft: Draft, kind: PortKind, specs: list[str]) -> list[tuple[StreamRef, SourceLocation | None]]:
        try:
            refs = parse_stream_refs(specs)
        except ValueError as error:
            self.problem(f"{kind.value}: {error}", draft.loc(kind.value), draft.name)
            return []
        return [(ref, draft.loc(kind.value, i)) for i, ref in enumerate(refs)]

    def options_field(self, draft: Draft) -> Field | None:
        """The one options message of a node: ``node_options { [type/X] {..} }`` or ``options { [X.ext] {..} }``."""
        blocks: list[Message] = list(draft.config.node_options)
        if draft.config.options is not None:
            blocks.append(draft.config.options)
        fields = [f for block in blocks for f in block]
        for f in fields:
            if not f.is_extension or not isinstance(f.value, Message):
                self.problem(
                    f"options must be written as '[type.googleapis.com/package.Type] {{ ... }}', found '{f.name}'",
                    f.location, draft.name)
                return None
        if len(fields) > 1:
            self.problem("a node takes one options message; found " + ", ".join(f.name for f in fields),
                         fields[1].location, draft.name)
            return None
        return fields[0] if fields else None

    # --- subgraphs --------------------------------------------------------------------------------

    def expand(self, drafts: list[Draft], stack: tuple[str, ...] = ()) -> list[Draft]:
        out: list[Draft] = []
        for draft in drafts:
            try:
                registration = self.registry.resolve(draft.config.calculator)
            except KeyError as error:
                self.problem(str(error.args[0]), draft.loc("calculator"), draft.name)
                self.unresolved_streams.update(ref.name for ref, _ in draft.refs[PortKind.OUTPUT])
                continue
            if registration.kind != "subgraph":
                draft.registration = registration
                out.append(draft)
                continue
            if registration.name in stack or len(stack) >= _MAX_SUBGRAPH_DEPTH:
                self.problem(f"subgraph '{registration.name}' includes itself ({' -> '.join(stack)})",
                             draft.loc("calculator"), draft.name)
                continue
            inner = self.instantiate(draft, registration.subgraph)
            out.extend(self.expand(inner, (*stack, registration.name)))
        return out

    def instantiate(self, outer: Draft, sub: LoadedGraphConfig) -> list[Draft]:
        """The subgraph's nodes, renamed into the outer graph and wired to the outer node's streams."""
        config = sub.config
        contract = {
            PortKind.INPUT: config.input_stream, PortKind.OUTPUT: config.output_stream,
            PortKind.SIDE_INPUT: config.input_side_packet, PortKind.SIDE_OUTPUT: config.output_side_packet,
        }
        stream_map: dict[str, str | None] = {}
        side_map: dict[str, str | None] = {}
        back_edge_streams: set[str] = set()
        for kind, specs in contract.items():
            mapping = stream_map if kind in (PortKind.INPUT, PortKind.OUTPUT) else side_map
            inner_ports = {ref.port: ref.name for ref in parse_stream_refs(specs)}
            outer_ports = {ref.port: (ref.name, loc) for ref, loc in outer.refs[kind]}
            for port, (_, location) in outer_ports.items():
                if port not in inner_ports:
                    self.problem(
                        f"subgraph '{config.type}' has no {kind.value} '{port}'."
                        f"{did_you_mean(port, inner_ports)} Its {kind.value}s: {', '.join(inner_ports) or 'none'}",
                        location, outer.name)
            for port, inner_name in inner_ports.items():
                mapping[inner_name] = outer_ports[port][0] if port in outer_ports else None
                if kind is PortKind.INPUT and port in outer.back_edges:
                    back_edge_streams.add(inner_name)
        inner_drafts = self.drafts(sub)
        used_option_type = False
        for draft in inner_drafts:
            draft.name = f"{outer.name}/{draft.name}"
            draft.base_path = outer.base_path
            for kind in KINDS:
                mapping = stream_map if kind in (PortKind.INPUT, PortKind.OUTPUT) else side_map
                renamed = []
                for ref, location in draft.refs[kind]:
                    if kind is PortKind.INPUT and ref.name in back_edge_streams:
                        draft.back_edges.setdefault(ref.port, location)
                    name = mapping.get(ref.name, f"{outer.name}/{ref.name}")
                    if name is not None:
                        renamed.append((StreamRef(ref.tag, ref.index, name), location))
                draft.refs[kind] = renamed
            if outer.options is not None and draft.options is not None and (
                draft.options.type_name == outer.options.type_name
            ):
                used_option_type = True
                assert isinstance(draft.options.value, Message) and isinstance(outer.options.value, Message)
                given = {f.name for f in outer.options.value}
                merged = [f for f in draft.options.value if f.name not in given] + list(outer.options.value)
                draft.options = Field(outer.options.name, Message(outer.options.location, merged),
                                      outer.options.location)
        if outer.options is not None and not used_option_type:
            self.problem(f"options of type '{outer.options.type_name}' are not used by any node of subgraph "
                         f"'{config.type}'", outer.options.location, outer.name)
        return inner_drafts

    # --- one node ---------------------------------------------------------------------------------

    def check_ports(self, draft: Draft, target: type[Calculator] | type[Resource]) -> None:
        contract = target.contract
        what = "resource" if issubclass(target, Resource) else "calculator"
        for kind in KINDS:
            declared = contract.of(kind)
            connected = draft.refs[kind]
            for ref, location in connected:
                port = declared.get(ref.tag)
                if port is None:
                    names = ", ".join(t or "(untagged)" for t in declared) or "none"
                    self.problem(
                        f"{what} '{target.name}' has no {kind.value} tag '{ref.tag or '(untagged)'}'."
                        f"{did_you_mean(ref.tag, declared)} Its {kind.value} tags: {names}",
                        location, draft.name)
                elif ref.index > 0 and not port.multiple:
                    self.problem(f"{kind.value} '{ref.port}': tag '{ref.tag}' takes one stream (index 0 only)",
                                 location, draft.name)
            tags = {ref.tag for ref, _ in connected}
            for tag, port in declared.items():
                if not port.optional and kind is not PortKind.OUTPUT and tag not in tags:
                    self.problem(f"required {kind.value} '{tag or '(untagged)'}' of {what} '{target.name}' "
                                 f"is not connected", draft.loc("calculator"), draft.name)
        if issubclass(target, Resource) and (draft.refs[PortKind.INPUT] or draft.refs[PortKind.OUTPUT]):
            self.problem(f"'{target.name}' is a resource: it is built once at load and takes no "
                         f"input_stream or output_stream, only side packets", draft.loc("calculator"), draft.name)
        for port, location in draft.back_edges.items():
            if port not in {ref.port for ref, _ in draft.refs[PortKind.INPUT]}:
                self.problem(f"input_stream_info names input '{port}', which this node does not connect",
                             location, draft.name)

    def check_options(self, draft: Draft, target: type[Calculator] | type[Resource]) -> BaseModel | None:
        options = draft.options
        override = self.overrides.pop(draft.name, None)
        if override:
            given = Message(_COMMAND_LINE, [_override_field(k, v) for k, v in override.items()])
            if options is None:
                options = Field(f"[type.googleapis.com/{target.options_type or 'overrides'}]", given, _COMMAND_LINE)
            else:
                assert isinstance(options.value, Message)
                kept = [f for f in options.value if f.name not in override]
                options = Field(options.name, Message(options.value.location, kept + given.fields), options.location)
        if options is None:
            try:
                return target.Options()
            except Exception as error:
                missing = getattr(error, "errors", lambda: [])()
                fields = ", ".join(str(e["loc"][0]) for e in missing if e.get("type") == "missing")
                self.problem(f"{target.name} needs options ({fields or error}); add node_options "
                             f"{{ [type.googleapis.com/{target.options_type or 'package.Type'}] {{ ... }} }}",
                             draft.loc("calculator"), draft.name)
                return None
        if target.options_type and options.type_name != target.options_type:
            self.problem(f"options are of type '{options.type_name}', but {target.name} takes "
                         f"'{target.options_type}'", options.location, draft.name)
            return None
        assert isinstance(options.value, Message)
        try:
            model, _ = validate_message(options.value, target.Options,
                                        what=f"options of {target.name}", node=draft.name)
        except GraphConfigError as error:
            self.problems.extend(error.problems)
            return None
        return model

    def sync_sets(self, draft: Draft, inputs: list[InputSpec], default: str) -> tuple[tuple[int, ...], ...]:
        handler: InputStreamHandlerConfig | None = draft.config.input_stream_handler
        name = handler.input_stream_handler if handler else default
        if name not in HANDLERS:
            self.problem(f"unknown input_stream_handler '{name}'.{did_you_mean(name, HANDLERS)} "
                         f"Known: {', '.join(HANDLERS)}", draft.loc("input_stream_handler"), draft.name)
            return (tuple(range(len(inputs))),)
        if name == "ImmediateInputStreamHandler":
            return tuple((i,) for i in range(len(inputs)))
        if name == "DefaultInputStreamHandler":
            return (tuple(range(len(inputs))),) if inputs else ()
        index_of = {spec.port: i for i, spec in enumerate(inputs)}
        sets: list[tuple[int, ...]] = []
        extensions = list(handler.options) if handler and handler.options else []
        for f in extensions:
            if not isinstance(f.value, Message):
                continue
            for sync_set in f.value.all("sync_set"):
                members = []
                for tag_field in sync_set.value.all("tag_index") if isinstance(sync_set.value, Message) else []:
                    port = port_key(*parse_tag_index(str(tag_field.value)))
                    if port not in index_of:
                        self.problem(f"sync_set names input '{port}', which this node does not connect",
                                     tag_field.location, draft.name)
                    else:
                        members.append(index_of[port])
                if members:
                    sets.append(tuple(members))
        grouped = {i for s in sets for i in s}
        rest = tuple(i for i in range(len(inputs)) if i not in grouped)
        return tuple(sets) + ((rest,) if rest else ())
