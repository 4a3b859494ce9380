"""The models a server serves: one loaded graph each, under the name clients put in ``model``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ovserve.framework.errors import GraphConfigError, Problem
from ovserve.framework.registry import Registry
from ovserve.framework.runtime import Graph
from ovserve.framework.spec import GraphSpec
from ovserve.framework.validation import load_graph
from ovserve.payloads import OVMS_REQUEST_TAG, OVMS_RESPONSE_TAG, REQUEST_TAG, RESPONSE_TAG

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
    #: The graph's input and output tags for the HTTP request and response.
    tags: tuple[str, str] = (REQUEST_TAG, RESPONSE_TAG)

    @property
    def ready(self) -> bool:
        return self.graph.is_ready()

    @property
    def kind(self) -> str:
        """``embeddings`` for a graph with an encoder, else ``text_generation``."""
        from ovserve.engine.embedder import BatchingEncoder

        encoder = any(isinstance(value, BatchingEncoder) for value in self.graph.side_packets.values())
        return "embeddings" if encoder else "text_generation"


def servable_tags(name: str, spec: GraphSpec) -> tuple[str, str]:
    """The tags a served graph reads the request and writes the response on: ``HTTP_REQUEST_PAYLOAD`` and
    ``HTTP_RESPONSE_PAYLOAD`` (OVMS's LLM graphs), or ``REQUEST_PAYLOAD`` and ``RESPONSE_PAYLOAD`` (its
    embeddings and rerank graphs)."""
    if OVMS_REQUEST_TAG in spec.inputs and OVMS_RESPONSE_TAG in spec.outputs:
        return OVMS_REQUEST_TAG, OVMS_RESPONSE_TAG
    check_servable_graph(name, spec)
    return REQUEST_TAG, RESPONSE_TAG


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
        #: Models still loading in the background (served once loaded; 503 until then).
        self.loading: set[str] = set()
        self._background: asyncio.Future[None] | None = None

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
        return cls(await _load_all(specs, registry))

    def load_in_background(self, names: list[str], make_specs: Callable[[], list[ServableSpec]],
                           registry: Registry) -> None:
        """Fetch (``make_specs``, in a thread) and load the models ``names`` while the others serve; each is
        served once loaded, and until then a request for it gets 503. A failure is logged and the model left
        out: the models already serving go on."""
        self.loading.update(names)

        async def load() -> None:
            try:
                specs = await _in_daemon_thread(make_specs)
                for servable in await _load_all(specs, registry):
                    self._by_name[servable.name] = servable
                    log.info("%s: loaded, serving", servable.name)
            except Exception as error:  # the others keep serving
                log.error("%s: could not be loaded: %s", ", ".join(names), error)
            finally:
                self.loading.difference_update(names)

        self._background = asyncio.ensure_future(load())

    async def stop(self) -> None:
        if self._background is not None:
            self._background.cancel()
            await asyncio.gather(self._background, return_exceptions=True)
        await asyncio.gather(*(s.graph.stop() for s in self), return_exceptions=True)


async def _load_all(specs: list[ServableSpec], registry: Registry) -> list[Servable]:
    graph_specs, tags = [], []
    for servable in specs:
        spec = load_graph(servable.graph_path, registry, servable.overrides)
        tags.append(servable_tags(servable.name, spec))
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
    return [Servable(s.name, graph, now, tag) for s, graph, tag in zip(specs, graphs, tags, strict=True)]


async def _in_daemon_thread(work: Callable[[], list[ServableSpec]]) -> list[ServableSpec]:
    """``work()`` in a daemon thread: a download still running at shutdown does not hold the process."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[list[ServableSpec]] = loop.create_future()

    def settle(result: list[ServableSpec] | None, error: BaseException | None) -> None:
        if not future.done():
            future.set_exception(error) if error is not None else future.set_result(result or [])

    def run() -> None:
        try:
            outcome: tuple[list[ServableSpec] | None, BaseException | None] = (work(), None)
        except BaseException as error:  # handed to the waiting task
            outcome = (None, error)
        with contextlib.suppress(RuntimeError):  # the loop is gone: the server stopped meanwhile
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=run, name="ovserve-background-fetch", daemon=True).start()
    return await future
