"""What the resource nodes that run a model behind the engine boundary share: their ``plugin_config`` option, and
how they close, say they are ready and report their engine's metrics."""

from __future__ import annotations

import importlib.util
import json
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from ovserve.engine.call_client import CallEngine
from ovserve.engine.process import EngineBusyError, EngineProcess
from ovserve.framework.metrics import Histogram


def plugin_config_object(value: object) -> object:
    """A graph's ``plugin_config`` as a dict: OVMS writes it as a JSON object in a string (empty: none)."""
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"plugin_config must be a JSON object string: {error}") from None
    if not isinstance(value, dict):
        raise ValueError("plugin_config must be a JSON object of OpenVINO properties, e.g. '{\"NUM_STREAMS\": \"1\"}'")
    return value


#: How to install what the audio nodes need (PyAV, to decode and encode audio).
INSTALL_AUDIO = "pip install 'ovserve[audio]'"


def require_pyav(what: str) -> None:
    """Fail a model's load, saying how to install PyAV, when it is missing (``what``: what the node uses it for)."""
    if importlib.util.find_spec("av") is None:
        raise ModuleNotFoundError(f"{what} with PyAV, which is not installed: {INSTALL_AUDIO}")


#: OpenVINO properties for a model's device, from a graph's options (a JSON object, or a string holding one).
PluginConfig = Annotated[dict[str, Any], BeforeValidator(plugin_config_object)]


class DeviceOptions(BaseModel):
    """The device options of OVMS's audio nodes: ``target_device`` (or its older name ``device``) and
    ``plugin_config``. Node options that have them derive from this."""

    model_config = ConfigDict(extra="forbid")

    target_device: str | None = Field(None, description="CPU (default), GPU, NPU, AUTO, ...")
    device: str | None = Field(None, description="the older name of target_device")
    plugin_config: PluginConfig = Field(default_factory=dict, description="OpenVINO properties (JSON)")

    @model_validator(mode="after")
    def _one_device(self) -> DeviceOptions:
        if self.target_device and self.device and self.target_device != self.device:
            raise ValueError(f"target_device '{self.target_device}' and device '{self.device}' disagree: set one")
        return self

    @property
    def chosen_device(self) -> str:
        return self.target_device or self.device or "CPU"


class HoldsRequests:
    """Mixed into what a node needs of a one-call model (a dataclass with ``engine``, ``max_held`` and ``held``):
    a count of the requests it holds, from before their input is decoded until their answer is out, so that a
    flood waits in no unbounded place. Nodes call :meth:`hold` when a request comes in (503 with Retry-After when
    the model holds ``max_held``) and :meth:`release` once it is done, whatever happened."""

    engine: CallEngine
    max_held: int
    held: int

    def hold(self) -> None:
        if self.held >= self.max_held:
            raise EngineBusyError(self.engine.spec.name, self.max_held)
        self.held += 1

    def release(self) -> None:
        self.held -= 1


class EngineBacked:
    """Mixed into a :class:`~ovserve.Resource` whose model runs in an engine process (:attr:`engine`, set by
    ``open``): closing it stops the engine, it is ready while the engine is, and ``/metrics`` has the engine's gauges
    and queue times. (A mixin, not a node of its own: ``class WhisperModel(EngineBacked, Resource)``.)"""

    engine: EngineProcess
    runs_in = "engine process"

    async def close(self) -> None:
        await self.engine.stop()

    def is_ready(self) -> bool:
        return self.engine.ready

    def metrics(self) -> dict[str, float]:
        return self.engine.metrics()

    def histograms(self) -> dict[str, Histogram]:
        return {"engine_queue_time_seconds": self.engine.queue_time}
