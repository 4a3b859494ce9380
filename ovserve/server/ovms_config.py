"""OVMS's ``config.json``: which graphs to serve under which names.

Only ``mediapipe_config_list`` (graphs) is served; classic ``model_config_list`` models are not
supported yet and are refused with a clear message rather than silently dropped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ovserve.framework.errors import GraphConfigError, Problem
from ovserve.server.servables import ServableSpec


class MediapipeGraphEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    base_path: str | None = None
    graph_path: str | None = None
    subconfig: str | None = None


class OvmsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_config_list: list[dict[str, Any]] = Field(default_factory=list)
    mediapipe_config_list: list[MediapipeGraphEntry] = Field(default_factory=list)
    monitoring: dict[str, Any] | None = None
    #: ovserve's addition: folders of custom calculators, relative to config.json.
    calculator_paths: list[str] = Field(default_factory=list)


def load_ovms_config(path: str | Path) -> tuple[list[ServableSpec], list[Path]]:
    """The graphs a config.json names, and its calculator folders; errors name the file and entry."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise GraphConfigError(f"{path}: cannot read the config: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise GraphConfigError(f"{path}:{error.lineno}:{error.colno}: not valid JSON: {error.msg}") from None
    try:
        config = OvmsConfig.model_validate(raw)
    except ValidationError as error:
        raise GraphConfigError([
            Problem(f"{path}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}") for e in error.errors()
        ]) from None
    if config.model_config_list:
        raise GraphConfigError(f"{path}: model_config_list is not supported yet: ovserve serves graphs "
                               f"(mediapipe_config_list); write a graph for each model")
    root = path.parent
    servables = []
    for index, entry in enumerate(config.mediapipe_config_list):
        if entry.subconfig:
            raise GraphConfigError(f"{path}: mediapipe_config_list[{index}] ('{entry.name}'): subconfig is not "
                                   f"supported yet")
        base = root / (entry.base_path or entry.name)
        graph = base / (entry.graph_path or "graph.pbtxt")
        if not graph.is_file():
            raise GraphConfigError(f"{path}: mediapipe_config_list[{index}] ('{entry.name}'): no graph file at {graph}")
        servables.append(ServableSpec(entry.name, graph))
    names = [s.name for s in servables]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise GraphConfigError(f"{path}: model names must be unique; repeated: {', '.join(duplicates)}")
    if not servables:
        raise GraphConfigError(f"{path}: mediapipe_config_list names no graph to serve")
    return servables, [root / p for p in config.calculator_paths]
