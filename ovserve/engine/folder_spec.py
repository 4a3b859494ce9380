"""The spec most one-call kinds share: a model in an OpenVINO IR folder, on a device, with a bound on its jobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ovserve.engine.kinds import EngineSpec

#: How many jobs such an engine holds at once by default, running and waiting.
DEFAULT_MAX_QUEUED = 4


@dataclass(frozen=True)
class FolderSpec(EngineSpec):
    """A model in the OpenVINO IR ``folder``, run on ``target_device`` with OpenVINO properties (``plugin_config``),
    holding at most ``max_queued`` jobs (running and waiting): more are refused at once with 503. Subclasses add
    their kind's settings (with defaults) and :meth:`~ovserve.engine.kinds.EngineSpec.load`."""

    folder: str
    target_device: str = "CPU"
    plugin_config: dict[str, Any] = field(default_factory=dict)
    max_queued: int = DEFAULT_MAX_QUEUED

    one_call = True

    @property
    def name(self) -> str:
        return self.folder.rstrip("/").rsplit("/", 1)[-1] or self.folder

    @property
    def location(self) -> str:
        return self.folder

    @property
    def device(self) -> str:
        return self.target_device

    @property
    def max_in_flight(self) -> int:
        return self.max_queued
