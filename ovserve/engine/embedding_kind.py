"""The embedding kind: a sentence encoder behind the engine boundary, one batch of token lists a call.

The HTTP process keeps the tokenizer and the batching of concurrent requests (:mod:`ovserve.engine.embedder`); the
encoder's weights live only in the engine process, compiled on the model's device. A job is one batch: its rows'
token ids go across, their float32 embeddings come back as bytes. The core runs one call at a time (the batcher sends
one batch at a time, and a run of the model already uses every core).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ovserve.engine.call_client import CallEngine
from ovserve.engine.embedder import EncoderSettings, SentenceEncoder
from ovserve.engine.kinds import CallCore, CallJob, CallSignal, EngineCore, EngineSpec

#: Jobs the client lets the engine hold: the batcher's one batch at a time, and room for the start-up question.
MAX_IN_FLIGHT = 4


@dataclass(frozen=True)
class EmbeddingSpec(EngineSpec):
    """An encoder IR folder (``openvino_model.xml``), the device and OpenVINO properties to compile it with, and how
    its outputs become embeddings."""

    folder: Path
    device: str = "CPU"
    properties: dict[str, Any] = field(default_factory=dict)
    settings: EncoderSettings = field(default_factory=EncoderSettings)

    one_call = True

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def location(self) -> str:
        return str(self.folder)

    @property
    def max_in_flight(self) -> int:
        return MAX_IN_FLIGHT

    def load(self) -> EngineCore:
        return CallCore(SentenceEncoder(self.folder, self.device, self.properties, self.settings), concurrency=1)


@dataclass(frozen=True)
class EmbedJob(CallJob):
    """One batch: every row's int64 token ids one after the other, and each row's length. Its result is the rows'
    embeddings, little-endian float32, row after row."""

    token_ids: bytes
    lengths: tuple[int, ...]

    @classmethod
    def of(cls, token_lists: Sequence[Sequence[int]]) -> EmbedJob:
        flat = np.fromiter((t for tokens in token_lists for t in tokens), dtype=np.int64)
        return cls(flat.tobytes(), tuple(len(tokens) for tokens in token_lists))

    def rows(self) -> list[list[int]]:
        ids = np.frombuffer(self.token_ids, dtype=np.int64)
        ends = np.cumsum(self.lengths)
        return [ids[end - length:end].tolist() for end, length in zip(ends, self.lengths, strict=True)]

    def run(self, pipeline: SentenceEncoder, emit: Any, cancelled: CallSignal) -> bytes:
        return pipeline.embed(self.rows()).astype("<f4").tobytes()


@dataclass(frozen=True)
class DimensionsJob(CallJob):
    """How many numbers an embedding of the loaded model has."""

    def run(self, pipeline: SentenceEncoder, emit: Any, cancelled: CallSignal) -> int:
        return pipeline.dimensions


class EmbeddingEngine(CallEngine):
    """The embedding model's engine, as the HTTP process uses it: :meth:`embed` a batch (the
    :class:`~ovserve.engine.embedder.BatchingEncoder` calls it), after :meth:`start` and :meth:`describe`."""

    spec: EmbeddingSpec

    def __init__(self, spec: EmbeddingSpec, **options: Any) -> None:
        super().__init__(spec, **options)
        #: The loaded model's embedding size (set by :meth:`describe`).
        self.dimensions = 0

    async def describe(self) -> int:
        """Ask the loaded model its embedding size, once it has started; returns it."""
        self.dimensions = int(await self.call(DimensionsJob()))
        return self.dimensions

    async def embed(self, token_lists: list[list[int]]) -> np.ndarray:
        """One float32 embedding per token list, in one run of the model; raises
        :class:`~ovserve.errors.ModelNotReadyError` (503) if the engine is restarting or dies meanwhile."""
        data = await self.call(EmbedJob.of(token_lists))
        return np.frombuffer(data, dtype="<f4").reshape(len(token_lists), -1)
