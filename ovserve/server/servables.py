"""The models a server serves: one loaded graph each, under the name clients put in ``model``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ovserve.framework.errors import GraphConfigError, Problem
from ovserve.framework.registry import Registry
from ovserve.framework.runtime import Graph
from ovserve.framework.spec import GraphSpec
from ovserve.framework.validation import load_graph
from ovserve.payloads import REQUEST_TAG, RESPONSE_TAG

log = logging.getLogger("ovserve.server")


@dataclass(frozen=True)
class ServableSpec:
    """What to serve: a name, a graph file, and option overrides by node name."""

    name: str
    graph_path: Path
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass
class Servable:
    """A loaded graph under its served name."""

    name: str
    graph: Graph
    created: int

    @property
    def ready(self) -> bool:
        return self.graph.is_ready()


def check_servable_graph(name: str, spec: GraphSpec) -> None:
    """A served graph reads ``HTTP_REQUEST_PAYLOAD`` and writes ``HTTP_RESPONSE_PAYLOAD`` (as in OVMS)."""
    missing = []
    if REQUEST_TAG not in spec.inputs:
        missing.append(f"input_stream '{REQUEST_TAG}:...'")
    if RESPONSE_TAG not in spec.outputs:
        missing.append(f"output_stream '{RESPONSE_TAG}:...'")
    if missing:
        raise GraphConfigError(Problem(f"model '{name}': to be served over HTTP the graph needs "
                                       f"{' and '.join(missing)}", None))


class Servables:
    """Every served model by name."""

    def __init__(self, servables: list[Servable]) -> None:
        self._by_name = {s.name: s for s in servables}

    def get(self, name: str) -> Servable | None:
        return self._by_name.get(name)

    def names(self) -> list[str]:
        return list(self._by_name)

    def __iter__(self) -> Iterator[Servable]:
        return iter(self._by_name.values())

    @property
    def ready(self) -> bool:
        return all(s.ready for s in self)

    @classmethod
    async def load(cls, specs: list[ServableSpec], registry: Registry) -> Servables:
        """Validate every graph first (so that a typo fails fast), then load them all."""
        graph_specs = []
        for servable in specs:
            spec = load_graph(servable.graph_path, registry, servable.overrides)
            check_servable_graph(servable.name, spec)
            for warning in spec.warnings:
                log.warning("%s: %s", servable.name, warning)
            graph_specs.append(spec)
        started = await asyncio.gather(*(Graph.start(spec) for spec in graph_specs), return_exceptions=True)
        failures = [result for result in started if isinstance(result, BaseException)]
        graphs = [result for result in started if isinstance(result, Graph)]
        if failures:
            await asyncio.gather(*(graph.stop() for graph in graphs), return_exceptions=True)
            raise failures[0]
        now = int(time.time())
        return cls([Servable(s.name, graph, now) for s, graph in zip(specs, graphs, strict=True)])

    async def stop(self) -> None:
        await asyncio.gather(*(s.graph.stop() for s in self), return_exceptions=True)
