"""What the resource nodes that run a model behind the engine boundary share: their ``plugin_config`` option, and
how they close, say they are ready and report their engine's metrics."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BeforeValidator

from ovserve.engine.client import EngineProcess
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


#: OpenVINO properties for a model's device, from a graph's options (a JSON object, or a string holding one).
PluginConfig = Annotated[dict[str, Any], BeforeValidator(plugin_config_object)]


class EngineBacked:
    """Mixed into a :class:`~ovserve.Resource` whose model runs in an engine process (:attr:`engine`, set by
    ``open``): closing it stops the engine, it is ready while the engine is, and ``/metrics`` has the engine's gauges
    and queue times. (A mixin, not a node of its own: ``class WhisperModel(EngineBacked, Resource)``.)"""

    engine: EngineProcess

    async def close(self) -> None:
        await self.engine.stop()

    def is_ready(self) -> bool:
        return self.engine.ready

    def metrics(self) -> dict[str, float]:
        return self.engine.metrics()

    def histograms(self) -> dict[str, Histogram]:
        return {"engine_queue_time_seconds": self.engine.queue_time}
