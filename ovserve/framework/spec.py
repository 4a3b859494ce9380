"""The validated, executable form of a graph: what the runtime needs, nothing it has to check again."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from ovserve.framework.calculator import Calculator, Resource
from ovserve.framework.errors import Problem
from ovserve.framework.textproto import SourceLocation

#: A consumer of a stream: (node index, input index), or (GRAPH_OUTPUT, graph output index).
Consumer = tuple[int, int]
GRAPH_OUTPUT = -1
DEFAULT_QUEUE_SIZE = 64


@dataclass(frozen=True, slots=True)
class InputSpec:
    port: str
    stream: str
    back_edge: bool


@dataclass(frozen=True, slots=True)
class OutputSpec:
    port: str
    stream: str
    consumers: tuple[Consumer, ...]


@dataclass(frozen=True)
class NodeSpec:
    """A calculator node: instantiated fresh for every run."""

    name: str
    calculator: type[Calculator]
    options: BaseModel
    inputs: tuple[InputSpec, ...]
    outputs: tuple[OutputSpec, ...]
    side_inputs: dict[str, str]
    #: Groups of input indexes processed in timestamp sync; every input is in exactly one group.
    sync_sets: tuple[tuple[int, ...], ...]
    location: SourceLocation | None
    base_path: Path
    process_is_async: bool
    #: The thread pool a plain ``process`` runs in ("" for the event loop): :mod:`ovserve.framework.executors`.
    executor: str = ""
    executor_threads: int = 0
    #: At most this many ``process`` calls of the node at once, across runs (0: no limit).
    max_in_flight: int = 0


@dataclass(frozen=True)
class ResourceSpec:
    """A resource node: built once per graph load, in this list's order."""

    name: str
    resource: type[Resource]
    options: BaseModel
    side_inputs: dict[str, str]
    side_outputs: dict[str, str]
    location: SourceLocation | None
    base_path: Path


@dataclass(frozen=True)
class GraphSpec:
    """A graph that passed validation, subgraphs expanded."""

    source: str
    base_path: Path
    nodes: tuple[NodeSpec, ...]
    resources: tuple[ResourceSpec, ...]
    #: Graph input streams: port key → stream name, and who consumes each.
    inputs: dict[str, str]
    input_consumers: dict[str, tuple[Consumer, ...]]
    #: Graph output streams: port key → stream name (index = position in this dict).
    outputs: dict[str, str]
    #: Side packets the host must provide at load: port key → side packet name.
    input_side_packets: dict[str, str]
    queue_size: int = DEFAULT_QUEUE_SIZE
    #: All streams, for display: name → (producer description, consumer descriptions).
    streams: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    #: Side packets, for display: name → (producer description, consumer descriptions).
    side_packets: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    #: What validation found odd but not wrong (a graph input nothing reads), each with its location.
    warnings: tuple[Problem, ...] = ()

    def input_port(self, name: str) -> str:
        """The port key of a graph input given by tag (``"HTTP_REQUEST_PAYLOAD"``) or stream name."""
        return self._port(name, self.inputs, "input")

    def output_port(self, name: str) -> str:
        """The port key of a graph output given by tag or stream name."""
        return self._port(name, self.outputs, "output")

    @staticmethod
    def _port(name: str, ports: dict[str, str], what: str) -> str:
        if name in ports:
            return name
        for port, stream in ports.items():
            if stream == name:
                return port
        known = ", ".join(f"{p}:{s}" if p else s for p, s in ports.items()) or "none"
        raise KeyError(f"the graph has no {what} stream '{name}'; its {what} streams: {known}")

