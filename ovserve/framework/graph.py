"""A started graph: :class:`Graph` opens its resources once (reusing a predecessor's that are unchanged, on
reload) and starts a :class:`GraphRun` per request."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel

from ovserve.framework.calculator import Resource, ResourceContext
from ovserve.framework.errors import GraphConfigError, GraphError, Problem
from ovserve.framework.graph_run import GraphRun
from ovserve.framework.metrics import Histogram
from ovserve.framework.spec import GraphSpec, ResourceSpec


class ResourceError(GraphError):
    """A resource failed to open at graph load; names the node."""

    def __init__(self, node: str, resource: str, cause: BaseException, location: object = None) -> None:
        self.node = node
        self.cause = cause
        where = f"{location}: " if location is not None else ""
        super().__init__(f"{where}resource node '{node}' ({resource}) failed to open: {type(cause).__name__}: {cause}")


class Graph:
    """A loaded graph: resources built and shared, ready to start runs (:meth:`run`).

    Create with ``await Graph.start(spec)``; stop with ``await graph.stop()``.
    """

    def __init__(self, spec: GraphSpec, side_packets: dict[str, Any], resources: list[Resource],
                 kept: list[_KeptResource] | None = None) -> None:
        self.spec = spec
        #: Every side packet by name: the host's and those the resources provided.
        self.side_packets = MappingProxyType(side_packets)
        self.resources = resources
        #: Each resource with its identity, side outputs and how many graphs hold it (a successor may take it
        #: over: the last graph holding it closes it).
        self._kept = kept if kept is not None else [_held(resource) for resource in resources]
        #: Whether :meth:`stop` ran (a stopped graph's resources are not taken over).
        self._stopped = False
        #: The resource nodes taken over from the graph this one replaced (:meth:`start` with ``reuse``).
        self.taken_over: list[str] = []
        #: Graph streams by stream name or port key → port key.
        self.input_alias = {**{name: port for port, name in spec.inputs.items()}, **{p: p for p in spec.inputs}}
        self.output_alias = {**{name: port for port, name in spec.outputs.items()}, **{p: p for p in spec.outputs}}
        self.node_sides = [
            MappingProxyType({port: side_packets[name] for port, name in node.side_inputs.items()})
            for node in spec.nodes
        ]
        #: The nodes with a ``max_in_flight``: how many of their ``process`` calls may run at once.
        self.in_flight_limits = {node.name: asyncio.Semaphore(node.max_in_flight) for node in spec.nodes
                                 if node.max_in_flight}

    @classmethod
    async def start(cls, spec: GraphSpec, side_packets: Mapping[str, Any] | None = None,
                    reuse: Graph | None = None) -> Graph:
        """Build the graph's resources in dependency order. ``side_packets`` provides the graph's
        ``input_side_packet``s, by tag or by name.

        ``reuse`` is the graph this one replaces (a reload): a resource of the same calculator, options, folder
        and side inputs is taken over from it instead of opened again (an engine keeps its loaded weights).
        Both graphs hold it then, and whichever stops last closes it, so ``reuse`` keeps serving the runs it
        has. If this start fails, nothing is taken over."""
        values = _given_side_packets(spec, side_packets)
        reusable = {kept.key: kept for kept in reuse._kept} if reuse is not None and not reuse._stopped else {}
        opened: list[Resource] = []
        resources: list[Resource] = []
        kept_list: list[_KeptResource] = []
        try:
            for resource_spec in spec.resources:
                side = {port: values[name] for port, name in resource_spec.side_inputs.items()}
                key = _resource_identity(resource_spec, side)
                kept = reusable.pop(key, None)
                if kept is None:
                    kept = _KeptResource(key, *await _open_resource(resource_spec, side))
                    opened.append(kept.resource)
                resources.append(kept.resource)
                kept_list.append(kept)
                for port, name in resource_spec.side_outputs.items():
                    values[name] = kept.outputs[port]
        except BaseException:
            await _close_all(opened)
            raise
        for kept in kept_list:
            kept.holders += 1
        graph = cls(spec, values, resources, kept_list)
        graph.taken_over = [spec.name for spec, kept in zip(spec.resources, kept_list, strict=True)
                            if kept.resource not in opened]
        return graph

    def reused_from_predecessor(self) -> list[str]:
        """The resource nodes this graph took over from the graph it replaced (for logs)."""
        return list(self.taken_over)

    def run(self) -> GraphRun:
        """Start a run: fresh calculators, fresh queues, shared resources. Call from the event loop."""
        return GraphRun(self)

    def is_ready(self) -> bool:
        """Whether every resource reports ready."""
        return all(resource.is_ready() for resource in self.resources)

    def resource_metrics(self) -> list[tuple[str, dict[str, float]]]:
        """Each resource's gauges with its node name."""
        return [(spec.name, resource.metrics()) for spec, resource in zip(self.spec.resources, self.resources,
                                                                         strict=False)]

    def resource_histograms(self) -> list[tuple[str, dict[str, Histogram]]]:
        """Each resource's distributions with its node name."""
        return [(spec.name, resource.histograms()) for spec, resource in zip(self.spec.resources, self.resources,
                                                                            strict=False)]

    async def stop(self) -> None:
        """Close the resources, last opened first: those another graph still holds stay open."""
        if self._stopped:
            return
        self._stopped = True
        self.resources = []
        for kept in self._kept:
            kept.holders -= 1
        await _close_all([kept.resource for kept in self._kept if kept.holders == 0])


class _KeptResource:
    """An opened resource, what identifies it for reuse, the side packets it provided, and how many graphs
    hold it (shared by the graphs that hold it)."""

    __slots__ = ("holders", "key", "outputs", "resource")

    def __init__(self, key: tuple[Any, ...], resource: Resource, outputs: dict[str, Any]) -> None:
        self.key = key
        self.resource = resource
        self.outputs = outputs
        self.holders = 0


def _held(resource: Resource) -> _KeptResource:
    """A resource held by one graph and offered to no successor (a graph built without :meth:`Graph.start`)."""
    kept = _KeptResource((id(resource),), resource, {})
    kept.holders = 1
    return kept


def _given_side_packets(spec: GraphSpec, side_packets: Mapping[str, Any] | None) -> dict[str, Any]:
    """The graph's input side packets by name, from what the host gave by tag or by name."""
    given = dict(side_packets or {})
    values: dict[str, Any] = {}
    missing = []
    for port, name in spec.input_side_packets.items():
        if port in given:
            values[name] = given[port]
        elif name in given:
            values[name] = given[name]
        else:
            missing.append(f"{port}:{name}" if port else name)
    if missing:
        raise GraphConfigError(Problem(f"the graph needs input side packets that were not given: "
                                       f"{', '.join(missing)}"))
    return values


def _resource_identity(spec: ResourceSpec, side: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes two resource nodes interchangeable: the class, its options, the folder relative paths
    resolve against, and the very objects it reads as side inputs."""
    options = spec.options.model_dump_json() if isinstance(spec.options, BaseModel) else repr(spec.options)
    return (spec.resource, options, str(spec.base_path.resolve()),
            tuple(sorted((port, id(value)) for port, value in side.items())))


async def _open_resource(spec: ResourceSpec, side: Mapping[str, Any]) -> tuple[Resource, dict[str, Any]]:
    """Open one resource node; a failure names the node."""
    try:
        resource = spec.resource()
        ctx = ResourceContext(spec.name, spec.options, MappingProxyType(dict(side)), spec.base_path)
        result = resource.open(ctx)
        if result is not None:
            await result
    except Exception as error:
        raise ResourceError(spec.name, spec.resource.name, error, spec.location) from error
    try:
        for port in spec.side_outputs:
            if port not in ctx.outputs:
                raise RuntimeError(f"open() did not set side output '{port}'")
    except Exception as error:
        await _close_all([resource])
        raise ResourceError(spec.name, spec.resource.name, error, spec.location) from error
    return resource, ctx.outputs


async def _close_all(resources: list[Resource]) -> None:
    errors = []
    for resource in reversed(resources):
        try:
            result = resource.close()
            if result is not None:
                await result
        except Exception as error:  # close every resource, then report the first failure
            errors.append(error)
    if errors:
        raise errors[0]
