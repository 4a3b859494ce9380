"""The models a server serves: one loaded graph each, under the name clients put in ``model``."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ovserve.framework.errors import GraphConfigError, Problem
from ovserve.framework.graph import Graph
from ovserve.framework.registry import Registry
from ovserve.framework.spec import GraphSpec
from ovserve.framework.validation import load_graph
from ovserve.payloads import OVMS_REQUEST_TAG, OVMS_RESPONSE_TAG, REQUEST_TAG, RESPONSE_TAG

log = logging.getLogger("ovserve.server")

#: A graph with several models serves as the first of these kinds it has (a voice graph: speech to text).
KIND_ORDER = ("speech2text", "rerank", "text2speech", "image_generation", "embeddings")


@dataclass(frozen=True)
class ServableSpec:
    """What to serve: a name, a graph file, and option overrides by node name."""

    name: str
    graph_path: Path
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass
class Servable:
    """A loaded graph under its served name, one version of it: a reload makes the next version."""

    name: str
    graph: Graph
    created: int
    #: The graph's input and output tags for the HTTP request and response.
    tags: tuple[str, str] = (REQUEST_TAG, RESPONSE_TAG)
    #: 1 when first loaded; each reload that swaps in a rebuilt graph serves the next.
    version: int = 1
    #: What it was loaded from, the digest of its graph file then, and the calculators it was built with (a
    #: reload compares all three).
    source: ServableSpec | None = None
    fingerprint: str = ""
    registry: Registry | None = None
    #: Requests running on this version now.
    in_flight: int = 0
    #: Called once a retired version has no request left (set by :meth:`Servables.retire`).
    on_idle: Callable[[Servable], None] | None = None

    @property
    def ready(self) -> bool:
        return self.graph.is_ready()

    @property
    def kind(self) -> str:
        """What the graph serves, as its models' side packets say (``model_kind``): ``speech2text`` for a Whisper
        engine, ``rerank`` for a reranker, ``text2speech`` for a speech engine, ``image_generation`` for an image
        engine, ``embeddings`` for an encoder, in
        that order when a graph has several; else ``text_generation``."""
        kinds = {getattr(value, "model_kind", None) for value in self.graph.side_packets.values()}
        return next((kind for kind in KIND_ORDER if kind in kinds), "text_generation")

    def acquire(self) -> None:
        """A request starts on this version."""
        self.in_flight += 1

    def release(self) -> None:
        """A request on this version ended; the last one on a retired version unloads it."""
        self.in_flight -= 1
        if self.in_flight == 0 and self.on_idle is not None:
            on_idle, self.on_idle = self.on_idle, None
            on_idle(self)


@dataclass(frozen=True)
class VersionStatus:
    """One version's state as OVMS's ``/v1/config`` reports it."""

    version: int
    state: str
    error: str = ""
    #: OVMS's error code when there is an error.
    code: str = "UNKNOWN"

    def to_dict(self) -> dict[str, Any]:
        return {"version": str(self.version), "state": self.state,
                "status": {"error_code": self.code if self.error else "OK", "error_message": self.error or "OK"}}


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
    """Every served model by name, with the versions being unloaded and what became of past ones."""

    #: Past versions kept in the status of each model (``END``).
    HISTORY = 4

    def __init__(self, servables: list[Servable]) -> None:
        self._by_name = {s.name: s for s in servables}
        #: Models still loading in the background (served once loaded; 503 until then).
        self.loading: set[str] = set()
        self._background: asyncio.Future[None] | None = None
        #: Versions replaced or removed, still finishing their requests.
        self._retiring: list[Servable] = []
        self._unloads: set[asyncio.Future[None]] = set()
        #: Unloaded versions by model name (newest last), and the last failed reload of each.
        self._ended: dict[str, list[VersionStatus]] = {}
        self._failed: dict[str, VersionStatus] = {}
        #: Versions a reload is loading now, by model name.
        self.reloading: dict[str, int] = {}

    def get(self, name: str) -> Servable | None:
        return self._by_name.get(name)

    def names(self) -> list[str]:
        return list(self._by_name)

    def __iter__(self) -> Iterator[Servable]:
        return iter(list(self._by_name.values()))

    @property
    def ready(self) -> bool:
        return all(s.ready for s in self)

    @classmethod
    async def load(cls, specs: list[ServableSpec], registry: Registry) -> Servables:
        """Validate every graph first (so that a typo fails fast), then load them all."""
        return cls(await _load_all(specs, registry))

    def next_version(self, name: str) -> int:
        """The version a reload of ``name`` would be."""
        known = [s.version for s in (*self._by_name.values(), *self._retiring) if s.name == name]
        known += [v.version for v in self._ended.get(name, [])]
        return max(known, default=0) + 1

    def put(self, servable: Servable) -> None:
        """Serve ``servable`` from now on; the version it replaces finishes its requests, then unloads."""
        previous = self._by_name.get(servable.name)
        self._by_name[servable.name] = servable
        self._failed.pop(servable.name, None)
        if previous is not None:
            self.retire(previous)

    def remove(self, name: str) -> None:
        """Stop serving ``name``: new requests get 404; those running finish, then it unloads."""
        servable = self._by_name.pop(name)
        self._failed.pop(name, None)
        self.retire(servable)

    def failed(self, name: str, version: int, error: str) -> None:
        """A reload of ``name`` failed: the version serving goes on; the status says what went wrong."""
        self._failed[name] = VersionStatus(version, "LOADING", error)

    def clear_failure(self, name: str) -> None:
        """The files of ``name`` match its serving version again (a broken edit was undone), or the entry is
        gone from the config."""
        self._failed.pop(name, None)

    def failed_names(self) -> list[str]:
        """The models whose last reload failed."""
        return list(self._failed)

    def retire(self, servable: Servable) -> None:
        """Unload ``servable`` once its last request ends (now, if none is running)."""
        self._retiring.append(servable)
        log.info("%s: version %d UNLOADING (%d request(s) in flight)", servable.name, servable.version,
                 servable.in_flight)
        if servable.in_flight == 0:
            self._unload(servable)
        else:
            servable.on_idle = self._unload

    def _unload(self, servable: Servable) -> None:
        async def unload() -> None:
            try:
                await servable.graph.stop()
            except Exception as error:  # the others keep serving
                log.error("%s: version %d did not unload cleanly: %s", servable.name, servable.version, error)
            self._retiring.remove(servable)
            ended = self._ended.setdefault(servable.name, [])
            ended.append(VersionStatus(servable.version, "END"))
            del ended[:-self.HISTORY]
            log.info("%s: version %d END (unloaded)", servable.name, servable.version)

        task = asyncio.ensure_future(unload())
        self._unloads.add(task)
        task.add_done_callback(self._unloads.discard)

    def status(self, draining: bool = False) -> dict[str, list[VersionStatus]]:
        """Every model's versions, newest first: the one serving, those unloading, the ended ones, one a reload is
        loading (``LOADING``), and a failed reload (``LOADING`` with its error) when the last one failed."""
        status: dict[str, list[VersionStatus]] = {}
        for name, versions in self._ended.items():
            status.setdefault(name, []).extend(versions)
        for servable in self._retiring:
            status.setdefault(servable.name, []).append(VersionStatus(servable.version, "UNLOADING"))
        for servable in self._by_name.values():
            serving = servable.ready and not draining
            status.setdefault(servable.name, []).append(VersionStatus(
                servable.version, "AVAILABLE" if serving else "UNAVAILABLE",
                "" if serving else "the model's engine is (re)starting" if not servable.ready else
                "the server is shutting down", "UNAVAILABLE"))
        for name, failure in self._failed.items():
            if name not in self.reloading:  # a retry is loading that version now
                status.setdefault(name, []).append(failure)
        for name, version in self.reloading.items():
            status.setdefault(name, []).append(VersionStatus(version, "LOADING"))
        return {name: sorted(versions, key=lambda v: -v.version) for name, versions in status.items()}

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
                    if servable.name in self._by_name:  # a config reload took the name meanwhile
                        log.error("%s: loaded, but the name is served already; not served", servable.name)
                        await servable.graph.stop()
                        continue
                    self._by_name[servable.name] = servable
                    log.info("%s: loaded, serving", servable.name)
            except Exception as error:  # the others keep serving
                log.error("%s: could not be loaded: %s", ", ".join(names), error)
            finally:
                self.loading.difference_update(names)

        self._background = asyncio.ensure_future(load())

    async def stop(self) -> None:
        """At shutdown: stop loading, and unload every version, serving or retiring."""
        if self._background is not None:
            self._background.cancel()
            await asyncio.gather(self._background, return_exceptions=True)
        await asyncio.gather(*self._unloads, return_exceptions=True)
        graphs = [s.graph for s in (*self._by_name.values(), *self._retiring)]
        await asyncio.gather(*(graph.stop() for graph in graphs), return_exceptions=True)


async def _load_all(specs: list[ServableSpec], registry: Registry) -> list[Servable]:
    graph_specs, tags = [], []
    fingerprints = [file_digest(servable.graph_path) for servable in specs]  # before reading: an edit during
    for servable in specs:                                                   # the load is seen by a reload
        spec, tag = validate_servable(servable, registry)
        graph_specs.append(spec)
        tags.append(tag)
    started = await asyncio.gather(*(Graph.start(spec) for spec in graph_specs), return_exceptions=True)
    failures = [result for result in started if isinstance(result, BaseException)]
    graphs = [result for result in started if isinstance(result, Graph)]
    if failures:
        await asyncio.gather(*(graph.stop() for graph in graphs), return_exceptions=True)
        raise failures[0]
    now = int(time.time())
    return [Servable(s.name, graph, now, tag, source=s, fingerprint=fingerprint, registry=registry)
            for s, graph, tag, fingerprint in zip(specs, graphs, tags, fingerprints, strict=True)]


def validate_servable(servable: ServableSpec, registry: Registry) -> tuple[GraphSpec, tuple[str, str]]:
    """Read and validate the graph a model is served with (its warnings logged); its HTTP tags."""
    spec = load_graph(servable.graph_path, registry, servable.overrides)
    tags = servable_tags(servable.name, spec)
    for warning in spec.warnings:
        log.warning("%s: %s", servable.name, warning)
    return spec, tags


async def load_successor(servable: ServableSpec, registry: Registry, version: int,
                         previous: Servable | None) -> Servable:
    """Load ``servable`` as version ``version`` of its model, taking over the resources of ``previous`` (the
    version it replaces) that did not change: an engine whose settings are the same keeps its weights."""
    fingerprint = file_digest(servable.graph_path)
    spec, tags = validate_servable(servable, registry)
    graph = await Graph.start(spec, reuse=previous.graph if previous is not None else None)
    reused = graph.reused_from_predecessor()
    if reused:
        log.info("%s: version %d reuses %s from version %d", servable.name, version, ", ".join(reused),
                 previous.version if previous is not None else 0)
    return Servable(servable.name, graph, int(time.time()), tags, version, servable, fingerprint, registry)


def file_digest(path: Path) -> str:
    """The MD5 of a file's bytes ("" if it cannot be read), as OVMS tells a changed graph.pbtxt."""
    try:
        return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
    except OSError:
        return ""


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
