"""The embedding model of a graph: an encoder IR compiled once, shared by every request, with dynamic batching."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ovserve import Resource, ResourceContext, SideOutput
from ovserve.engine.embedder import BatchingEncoder, SentenceEncoder, encoder_settings
from ovserve.engine.trial_load import load_in_child_first
from ovserve.model_catalog import models_path_in_graph

log = logging.getLogger("ovserve.calculators")


class EmbeddingsCalculatorOVOptions(BaseModel):
    """OVMS's ``EmbeddingsCalculatorOVOptions``, plus ovserve's batching settings."""

    model_config = ConfigDict(extra="forbid")

    models_path: str = Field(description="an encoder IR folder (openvino_model.xml, openvino_tokenizer.xml), "
                                         "relative to the graph file, or a model in the store")
    normalize_embeddings: bool | None = Field(None, description="default: from modules.json (a Normalize module)")
    pooling: Literal["CLS", "MEAN", "LAST"] | None = Field(None, description="default: from 1_Pooling/config.json")
    truncate: bool = Field(False, description="cut inputs longer than the model takes; otherwise they get a 400")
    target_device: str = "CPU"
    plugin_config: dict[str, Any] | str = Field(default_factory=dict, description="OpenVINO properties (JSON)")
    max_batch: int = Field(32, ge=1, description="the most inputs in one run of the model")
    batch_wait_ms: float = Field(2.0, ge=0, description="how long the first waiting input waits for others")

    @field_validator("plugin_config")
    @classmethod
    def _json(cls, value: dict[str, Any] | str) -> dict[str, Any]:
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else {}
        if not isinstance(value, dict):
            raise ValueError("plugin_config must be a JSON object")
        return value


class EmbeddingsModel(Resource):
    """Loads the encoder named by ``models_path`` (in a thread) and provides it, batched, as ``ENCODER``."""

    ENCODER = SideOutput(BatchingEncoder, doc="the encoder: tokenize, and embed with dynamic batching")

    Options = EmbeddingsCalculatorOVOptions
    options_type = "mediapipe.EmbeddingsCalculatorOVOptions"

    async def open(self, ctx: ResourceContext) -> None:
        options: EmbeddingsCalculatorOVOptions = ctx.options
        folder = models_path_in_graph(ctx.base_path, options.models_path)
        if not (folder / "openvino_model.xml").is_file() or not (folder / "openvino_tokenizer.xml").is_file():
            raise FileNotFoundError(f"models_path '{folder}' is not an encoder IR folder (it needs openvino_model.xml "
                                    f"and openvino_tokenizer.xml; 'ovserve pull all-minilm-l6-v2' fetches one)")
        settings = encoder_settings(folder)
        if options.pooling is not None:
            settings = replace(settings, pooling=options.pooling)
        if options.normalize_embeddings is not None:
            settings = replace(settings, normalize=options.normalize_embeddings)
        await asyncio.to_thread(load_in_child_first, "encoder", folder)  # a broken file must not crash the server
        encoder = await asyncio.to_thread(SentenceEncoder, folder, options.target_device,
                                          options.plugin_config, settings)  # type: ignore[arg-type]
        log.info("%s: %d dimensions, %s pooling%s, at most %d tokens an input", folder.name, encoder.dimensions,
                 settings.pooling, ", normalized" if settings.normalize else "", settings.max_length)
        self.encoder = BatchingEncoder(encoder, options.max_batch, options.batch_wait_ms / 1000, options.truncate)
        ctx.set(self.ENCODER, self.encoder)

    async def close(self) -> None:
        await self.encoder.close()
