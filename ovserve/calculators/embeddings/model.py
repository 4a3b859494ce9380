"""The embedding model of a graph: its tokenizer in the server process, its encoder in an engine process of its own,
shared by every request, with dynamic batching."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ovserve import Resource, ResourceContext, SideOutput
from ovserve.calculators.engine_resource import EngineBacked, PluginConfig
from ovserve.engine.embedder import BatchingEncoder, EncoderTokenizer, encoder_settings
from ovserve.engine.embedding_kind import EmbeddingEngine, EmbeddingSpec
from ovserve.engine.trial_load import load_in_child_first
from ovserve.store.catalog import models_path_in_graph

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
    plugin_config: PluginConfig = Field(default_factory=dict, description="OpenVINO properties (JSON)")
    max_batch: int = Field(32, ge=1, description="the most inputs in one run of the model")
    batch_wait_ms: float = Field(2.0, ge=0, description="how long the first waiting input waits for others")


class EmbeddingsModel(EngineBacked, Resource):
    """Loads the tokenizer named by ``models_path`` (in a thread) and starts the encoder's engine process, on
    ``target_device``; provides both, batched, as ``ENCODER``. No model weights are held in the server process."""

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
        tokenizer = await asyncio.to_thread(EncoderTokenizer, folder, settings)
        properties: dict[str, Any] = options.plugin_config
        self.engine = EmbeddingEngine(EmbeddingSpec(folder, options.target_device, properties, settings))
        await self.engine.start()
        try:
            dimensions = await self.engine.describe()
        except BaseException:
            await self.engine.stop()
            raise
        log.info("%s: %d dimensions, %s pooling%s, at most %d tokens an input", folder.name, dimensions,
                 settings.pooling, ", normalized" if settings.normalize else "", settings.max_length)
        self.encoder = BatchingEncoder(self.engine, tokenizer, options.max_batch, options.batch_wait_ms / 1000,
                                       options.truncate)
        ctx.set(self.ENCODER, self.encoder)

    async def close(self) -> None:
        await self.encoder.close()
        await super().close()
