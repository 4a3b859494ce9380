"""Hot reload of ``--config``: poll ``config.json`` and every graph it names, and apply what changed.

As OVMS does (``--file_system_poll_wait_seconds``, ``POST /v1/config/reload``), with one step further: an edit
of a ``graph.pbtxt`` alone is picked up too, not only an edit of ``config.json``.

- A new entry is loaded and served. A removed entry stops taking requests; its running ones finish, then it
  unloads.
- A changed entry or graph file is rebuilt and swapped in at once; requests running on the old version finish
  there. Resources whose settings did not change are taken over (an engine keeps its weights).
- A broken edit changes nothing for that model: the old version serves on, the error is logged with its
  file:line, counted in ``ovserve_config_reload_failures_total`` and shown in ``/v1/config``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ovserve.framework.errors import GraphError
from ovserve.framework.registry import Registry, build_registry
from ovserve.server.ovms_config import load_ovms_config
from ovserve.server.servables import Servables, ServableSpec, file_digest, load_successor

log = logging.getLogger("ovserve.server")

#: OVMS's default --file_system_poll_wait_seconds.
DEFAULT_POLL_SECONDS = 1.0


@dataclass
class ReloadOutcome:
    """What one reload did, by model name."""

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    #: Model name ("" for config.json as a whole) → what went wrong.
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.replaced or self.removed)


class ConfigReloader:
    """Keeps what ``servables`` serves in step with ``config``: call :meth:`watch` to poll, or :meth:`reload`
    (``POST /v1/config/reload``) to apply the files now. ``on_failure`` is called with the model name (``""``
    for the config as a whole) each time a reload fails."""

    def __init__(self, config: Path, loaded: tuple[list[ServableSpec], list[Path]], servables: Servables,
                 registry: Registry, extra_calculators: Iterable[Path],
                 on_failure: Callable[[str], None] = lambda model: None,
                 on_reload: Callable[[], None] = lambda: None) -> None:
        """``loaded`` is what the server loaded ``config`` as: its entries and calculator folders."""
        self.config = config
        self.servables = servables
        self.registry = registry
        self.extra_calculators = list(extra_calculators)
        self.on_failure = on_failure
        self.on_reload = on_reload
        specs, self.calculator_paths = loaded
        #: The models config.json serves (others, such as --embedding-model, are not the reload's to change).
        self.managed = [spec.name for spec in specs]
        self.graph_files = [spec.graph_path for spec in specs]
        #: The fingerprint of the files at the last reload: none yet, so that the first poll compares every
        #: entry with what was loaded (an edit made while the server started is not missed).
        self.seen = ""
        self._lock = asyncio.Lock()
        #: Whether the server is shutting down (set by ``ovserve serve``): no reload starts then.
        self.draining: Callable[[], bool] = lambda: False

    def fingerprint(self) -> str:
        """A digest of config.json and every graph file it named at the last reload."""
        digest = hashlib.md5(usedforsecurity=False)
        for path in (self.config, *self.graph_files):
            digest.update(f"{path}\0{file_digest(path)}\0".encode())
        return digest.hexdigest()

    async def watch(self, every: float) -> None:
        """Poll every ``every`` seconds until cancelled; reload when a watched file changed."""
        while True:
            await asyncio.sleep(every)
            if self.draining():
                return
            if self.fingerprint() != self.seen:
                try:
                    await self.reload()
                except Exception:  # a bug in a reload must not end the watching: log it, and watch on
                    log.exception("config reload: failed unexpectedly; the previous versions keep serving")

    async def reload(self) -> ReloadOutcome:
        """Read config.json and its graphs now and apply what changed (one reload at a time)."""
        async with self._lock:
            self.seen = self.fingerprint()
            outcome = await self._apply()
        for name, error in outcome.failed.items():
            self.on_failure(name)
            where = f"{name}: " if name else ""
            log.error("config reload: %s%s; the previous version keeps serving", where, error)
        if outcome.changed:
            self.on_reload()
            log.info("config reload: %s", _describe(outcome))
        return outcome

    async def _apply(self) -> ReloadOutcome:
        outcome = ReloadOutcome()
        try:
            specs, calculator_paths = load_ovms_config(self.config)
        except GraphError as error:
            outcome.failed[""] = str(error)
            return outcome
        self.graph_files = [spec.graph_path for spec in specs]
        self.seen = self.fingerprint()
        if calculator_paths != self.calculator_paths:
            try:
                self.registry = await asyncio.to_thread(build_registry, [*calculator_paths, *self.extra_calculators])
            except (GraphError, ImportError, OSError, SyntaxError) as error:
                outcome.failed[""] = f"{self.config}: calculator_paths: {error}"
                return outcome
            self.calculator_paths = calculator_paths
        wanted = {spec.name: spec for spec in specs}
        for name in self.servables.failed_names():
            if name not in wanted:
                self.servables.clear_failure(name)
        for name in [name for name in self.managed if name not in wanted]:
            if self.servables.get(name) is not None:
                self.servables.remove(name)
            outcome.removed.append(name)
        self.managed = [name for name in self.managed if name in wanted]
        for spec in specs:
            await self._apply_entry(spec, outcome)
        return outcome

    async def _apply_entry(self, spec: ServableSpec, outcome: ReloadOutcome) -> None:
        """Load an entry that is new or changed; leave it as it is otherwise, or when the load fails."""
        current = self.servables.get(spec.name)
        if spec.name not in self.managed and (current is not None or spec.name in self.servables.loading):
            outcome.failed[spec.name] = (f"{self.config}: the name '{spec.name}' is already served (not from this "
                                         f"config); choose another")
            return
        if current is not None and current.source == spec and current.fingerprint == file_digest(spec.graph_path) \
                and current.registry is self.registry:
            self.servables.clear_failure(spec.name)  # a broken edit undone: what serves is what the files say
            return
        version = self.servables.next_version(spec.name)
        self.servables.reloading[spec.name] = version
        try:
            servable = await load_successor(spec, self.registry, version, current)
        except Exception as error:  # any failure leaves the serving version in place
            message = str(error) if isinstance(error, GraphError) else f"{type(error).__name__}: {error}"
            self.servables.failed(spec.name, version, message)
            outcome.failed[spec.name] = message
            return
        finally:
            del self.servables.reloading[spec.name]
        self.servables.put(servable)
        if spec.name not in self.managed:
            self.managed.append(spec.name)
        (outcome.replaced if current is not None else outcome.added).append(spec.name)
        log.info("%s: version %d AVAILABLE (%s)", spec.name, version, spec.graph_path)


def _describe(outcome: ReloadOutcome) -> str:
    parts = [f"{what} {', '.join(names)}" for what, names in
             (("added", outcome.added), ("reloaded", outcome.replaced), ("removed", outcome.removed)) if names]
    return "; ".join(parts)
