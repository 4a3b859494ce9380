"""The graph config: MediaPipe's ``CalculatorGraphConfig`` text format, read into pydantic models.

Field names follow MediaPipe (and therefore OVMS) exactly, so a ``graph.pbtxt`` written for either
loads unchanged. Node options stay raw text-format messages here; they are validated against each
calculator's own options model once the calculator is known (see :mod:`ovserve.framework.validation`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ovserve.framework.errors import GraphConfigError, Problem
from ovserve.framework.schema import validate_message
from ovserve.framework.textproto import Message, SourceLocation, TextProtoSyntaxError, parse_text_proto

_STRICT = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


class InputStreamInfo(BaseModel):
    """``input_stream_info { tag_index: "LOOPBACK:0" back_edge: true }``."""

    model_config = _STRICT
    tag_index: str
    back_edge: bool = False


class InputStreamHandlerConfig(BaseModel):
    """``input_stream_handler { input_stream_handler: "..." options { ... } }``.

    Handlers: ``DefaultInputStreamHandler`` (all inputs synchronised by timestamp),
    ``ImmediateInputStreamHandler`` (each input on its own), ``SyncSetInputStreamHandler`` (the
    ``sync_set`` groups named in its options are each synchronised; the rest form one more group).
    """

    model_config = _STRICT
    input_stream_handler: str = "DefaultInputStreamHandler"
    options: Message | None = None


class NodeConfig(BaseModel):
    """One ``node { ... }`` block."""

    model_config = _STRICT
    name: str = ""
    calculator: str
    input_stream: list[str] = Field(default_factory=list)
    output_stream: list[str] = Field(default_factory=list)
    input_side_packet: list[str] = Field(default_factory=list)
    output_side_packet: list[str] = Field(default_factory=list)
    node_options: list[Message] = Field(default_factory=list)
    options: Message | None = None
    input_stream_info: list[InputStreamInfo] = Field(default_factory=list)
    input_stream_handler: InputStreamHandlerConfig | None = None
    #: A declared executor's name: the node's plain ``process`` runs in that thread pool.
    executor: str = ""
    #: At most this many ``process`` calls at once, across requests (0: no limit).
    max_in_flight: int = 0
    # Accepted for compatibility with MediaPipe files; ovserve schedules on asyncio and ignores them.
    buffer_size_hint: int = 0
    source_layer: int = 0
    profiler_config: Message | None = None


class GraphConfig(BaseModel):
    """A whole graph file: ``CalculatorGraphConfig``.

    ``type`` names a graph that is registered as a subgraph and used as a node in other graphs.
    """

    model_config = _STRICT
    type: str = ""
    input_stream: list[str] = Field(default_factory=list)
    output_stream: list[str] = Field(default_factory=list)
    input_side_packet: list[str] = Field(default_factory=list)
    output_side_packet: list[str] = Field(default_factory=list)
    node: list[NodeConfig] = Field(default_factory=list)
    max_queue_size: int = 0
    # Accepted for compatibility; ignored.
    num_threads: int = 0
    #: ``executor { name: ... type: "ThreadPoolExecutor" options { ... num_threads: N } }``: thread pools
    #: that nodes name in their ``executor:`` field.
    executor: list[Message] = Field(default_factory=list)
    input_stream_handler: InputStreamHandlerConfig | None = None
    output_stream_handler: Message | None = None
    profiler_config: Message | None = None
    graph_options: list[Message] = Field(default_factory=list)
    options: Message | None = None


@dataclass(frozen=True, slots=True)
class StreamRef:
    """A parsed ``TAG:index:name`` reference to a stream or side packet."""

    tag: str
    index: int
    name: str

    @property
    def port(self) -> str:
        """``TAG`` for index 0, else ``TAG:index`` (``:index`` for an untagged port)."""
        return port_key(self.tag, self.index)

    def __str__(self) -> str:
        return f"{self.tag}:{self.index}:{self.name}" if self.index else f"{self.tag}:{self.name}"


def port_key(tag: str, index: int) -> str:
    return tag if index == 0 and tag else f"{tag}:{index}"


_TAG = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_stream_refs(specs: list[str]) -> list[StreamRef]:
    """Parse a node's (or graph's) stream list: ``TAG:name``, ``TAG:2:name``, or a bare ``name``.

    Bare names are untagged ports numbered in order. Raises ``ValueError`` with a readable message.
    """
    refs: list[StreamRef] = []
    seen: set[tuple[str, int]] = set()
    untagged = 0
    for spec in specs:
        parts = spec.split(":")
        if len(parts) == 1:
            tag, index, name = "", untagged, parts[0]
            untagged += 1
        elif len(parts) == 2:
            tag, index, name = parts[0], 0, parts[1]
        elif len(parts) == 3 and parts[1].isdigit():
            tag, index, name = parts[0], int(parts[1]), parts[2]
        else:
            raise ValueError(f"'{spec}' is not of the form TAG:name, TAG:index:name or name")
        if tag and not _TAG.match(tag):
            raise ValueError(f"tag '{tag}' in '{spec}' must be upper case letters, digits and '_'")
        if not _NAME.match(name):
            raise ValueError(f"name '{name}' in '{spec}' must be letters, digits and '_'")
        if (tag, index) in seen:
            raise ValueError(f"'{spec}': port {port_key(tag, index)} is connected twice")
        seen.add((tag, index))
        refs.append(StreamRef(tag, index, name))
    return refs


def parse_tag_index(spec: str) -> tuple[str, int]:
    """Parse ``TAG``, ``TAG:1`` or ``:1`` as used by ``input_stream_info`` and sync sets."""
    tag, _, index = spec.partition(":")
    if index and not index.isdigit():
        raise ValueError(f"'{spec}' is not of the form TAG or TAG:index")
    return tag, int(index or 0)


@dataclass(frozen=True)
class LoadedGraphConfig:
    """A graph config with where it came from: the file and the location of every field."""

    config: GraphConfig
    source: str
    base_path: Path
    locations: dict[tuple[str | int, ...], SourceLocation]

    def location(self, *path: str | int) -> SourceLocation | None:
        """Where the field at ``path`` (e.g. ``"node", 2, "input_stream", 0``) was written."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.locations:
                return self.locations[path[:end]]
        return None


def parse_graph_config(text: str, source: str = "<string>", base_path: Path | None = None) -> LoadedGraphConfig:
    """Parse graph text; raises :class:`GraphConfigError` naming file:line:column on any problem."""
    try:
        message = parse_text_proto(text, source)
    except TextProtoSyntaxError as error:
        raise GraphConfigError(Problem(error.reason, error.location)) from None
    config, locations = validate_message(message, GraphConfig, what="the graph")
    base = base_path if base_path is not None else (Path(source).parent if source != "<string>" else Path.cwd())
    return LoadedGraphConfig(config, source, base, locations)


def load_graph_config(path: str | Path) -> LoadedGraphConfig:
    """Read and parse a ``.pbtxt`` graph file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise GraphConfigError(f"{path}: cannot read the graph file: {error.strerror}") from None
    return parse_graph_config(text, str(path), path.parent)
