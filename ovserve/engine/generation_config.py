"""A model's default sampling settings, from its ``generation_config.json``.

Requests that leave ``temperature``, ``top_p`` (or the engine's ``top_k``) out get the model's own
defaults, as vLLM does: the Hugging Face ``generation_config.json`` in the model's folder (an IR
folder, or the folder holding the ``.gguf``), or the file the graph names in ``generation_config_path``.
Only the sampling keys are read; everything else in the file (token ids, ``max_length``, ...) is left
to the model. Without a file, OpenAI's defaults apply: temperature 1, top_p 1, no top-k.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ovserve.engine.settings import ModelFiles

GENERATION_CONFIG = "generation_config.json"


class SamplingDefaults(BaseModel):
    """What a request samples with when it does not say (the keys of ``generation_config.json``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    temperature: Annotated[float, Field(ge=0, le=2)] = 1.0
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    #: Only the most likely ``top_k`` tokens are sampled from; ``None`` or 0: all of them.
    top_k: Annotated[int, Field(ge=0)] | None = None

    def describe(self) -> str:
        top_k = f", top_k {self.top_k}" if self.top_k else ""
        return f"temperature {self.temperature:g}, top_p {self.top_p:g}{top_k}"


#: OpenAI's defaults, for models without a generation_config.json.
OPENAI_SAMPLING = SamplingDefaults()


def generation_config_of(model: ModelFiles) -> Path:
    """Where a model's ``generation_config.json`` would be: in the IR folder, or next to the ``.gguf``."""
    folder = model.path if model.kind == "openvino_ir" else model.path.parent
    return folder / GENERATION_CONFIG


def load_sampling_defaults(path: Path, *, required: bool = False) -> SamplingDefaults:
    """The sampling defaults in ``path``; OpenAI's if the file is missing and not ``required``.

    Raises ``ValueError`` naming the file and the key when it is not valid JSON or a value is out of range.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        if required:
            raise FileNotFoundError(f"generation_config_path '{path}' does not exist") from None
        return OPENAI_SAMPLING
    try:
        return SamplingDefaults.model_validate(json.loads(text))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}:{error.lineno}:{error.colno}: not valid JSON: {error.msg}") from None
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"]) or "the file"
        raise ValueError(f"{path}: '{where}' {problem['msg'].lower()} (got {problem.get('input')!r})") from None
