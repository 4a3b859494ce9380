"""Sentence embeddings on the OpenVINO runtime: tokenize with the model's tokenizer IR, run the encoder, pool
and normalize as the model's sentence-transformers files say, and batch concurrent requests into one run.

The work is split across the engine boundary: the HTTP process tokenizes (:class:`EncoderTokenizer`: no model
weights, and requests are checked on their token ids before the engine sees them) and batches
(:class:`BatchingEncoder`); the encoder itself (:class:`SentenceEncoder`) runs in the model's engine process
(:mod:`ovserve.engine.embedding_kind`), on the model's device.

The OpenVINO runtime is used directly rather than ``openvino_genai.TextEmbeddingPipeline``: on this model both
take the same time (measured: 1, 8 and 32 texts within noise of each other), and the runtime takes token ids
as they are (OpenAI's token-array inputs), counts tokens exactly for ``usage``, and lets the server decide
about inputs longer than the model takes instead of truncating them silently.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import numpy as np

log = logging.getLogger("ovserve.engine")

Pooling = Literal["CLS", "MEAN", "LAST"]


@dataclass(frozen=True)
class EncoderSettings:
    """How an encoder's outputs become embeddings, and how long its inputs may be."""

    pooling: Pooling = "CLS"
    normalize: bool = True
    max_length: int = 512
    #: Token ids run from 0 to ``vocab_size - 1`` (0: unknown).
    vocab_size: int = 0


def encoder_settings(folder: Path) -> EncoderSettings:
    """Pooling, normalization and the input limit from a sentence-transformers folder: ``modules.json`` (a
    ``Normalize`` module), ``1_Pooling/config.json`` (``pooling_mode_*``) and ``sentence_bert_config.json``
    (``max_seq_length``); without them, CLS pooling, normalized, at the model's ``max_position_embeddings``."""
    def read(name: str) -> dict[str, Any]:
        try:
            value = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {"modules": value}

    modules = read("modules.json").get("modules", [])
    normalize = any("Normalize" in str(module.get("type", "")) for module in modules) if modules else True
    pooling_config = read("1_Pooling/config.json")
    pooling: Pooling = "CLS"
    if pooling_config.get("pooling_mode_mean_tokens"):
        pooling = "MEAN"
    elif pooling_config.get("pooling_mode_lasttoken"):
        pooling = "LAST"
    config = read("config.json")
    limit = read("sentence_bert_config.json").get("max_seq_length") or config.get("max_position_embeddings") or 512
    return EncoderSettings(pooling, normalize, int(limit), int(config.get("vocab_size") or 0))


def pool_embeddings(hidden: np.ndarray, mask: np.ndarray, settings: EncoderSettings) -> np.ndarray:
    """One vector per row of ``hidden`` ([batch, tokens, dims]), over the tokens ``mask`` keeps: the first
    (CLS), the mean, or the last; then scaled to length 1 if the model normalizes."""
    if settings.pooling == "MEAN":
        weights = mask[..., None].astype(np.float32)
        vectors = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    elif settings.pooling == "LAST":
        vectors = hidden[np.arange(len(hidden)), mask.sum(axis=1) - 1]
    else:
        vectors = hidden[:, 0]
    if settings.normalize:
        vectors = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
    return vectors.astype(np.float32)


class EncoderTokenizer:
    """An encoder's tokenizer IR, compiled on CPU in the HTTP process: it holds no model weights (the model runs in its
    engine process, :mod:`ovserve.engine.embedding_kind`), and token ids are what requests are checked on before the
    engine sees them. Blocking calls: run them in a thread."""

    def __init__(self, folder: Path, settings: EncoderSettings | None = None) -> None:
        import openvino as ov
        import openvino_tokenizers  # noqa: F401 - registers the tokenizer operations with OpenVINO

        self.settings = settings or encoder_settings(folder)
        self._tokenizer = ov.Core().compile_model(folder / "openvino_tokenizer.xml", "CPU")
        self._lock = threading.Lock()  # one call at a time through the compiled model (requests come from threads)

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Each text's token ids, special tokens included, untruncated."""
        if not texts:
            return []
        with self._lock:
            encoded = self._tokenizer(texts)
        ids, mask = encoded["input_ids"], encoded["attention_mask"]
        return [row[m.astype(bool)].tolist() for row, m in zip(ids, mask, strict=True)]


class SentenceEncoder:
    """An encoder IR compiled on ``device``: the embedding kind's pipeline, in its engine process. Blocking calls, one
    run at a time."""

    def __init__(self, folder: Path, device: str = "CPU", properties: dict[str, Any] | None = None,
                 settings: EncoderSettings | None = None) -> None:
        import openvino as ov

        self.settings = settings or encoder_settings(folder)
        self._model = ov.Core().compile_model(folder / "openvino_model.xml", device, properties or {})
        self._inputs = {port.get_any_name() for port in self._model.inputs}
        self._lock = threading.Lock()
        self._request = self._model.create_infer_request()
        self.dimensions = int(self._model.outputs[0].get_partial_shape()[-1].get_length())

    def embed(self, token_lists: list[list[int]]) -> np.ndarray:
        """One embedding (float32) per token list, all in one run of the model."""
        length = max(len(tokens) for tokens in token_lists)
        ids = np.zeros((len(token_lists), length), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, tokens in enumerate(token_lists):
            ids[row, :len(tokens)] = tokens
            mask[row, :len(tokens)] = 1
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        with self._lock:
            hidden = np.array(self._request.infer(feed)[0], dtype=np.float32)
        return pool_embeddings(hidden, mask, self.settings)


class Embedder(Protocol):
    """What :class:`BatchingEncoder` runs its batches on: the embedding model's engine
    (:class:`~ovserve.engine.embedding_kind.EmbeddingEngine`)."""

    #: How many numbers an embedding has.
    dimensions: int

    async def embed(self, token_lists: list[list[int]]) -> np.ndarray:
        """One float32 embedding per token list, in order."""
        ...


class _Pending:
    """One request's rows, how many are done, and where its answer goes."""

    __slots__ = ("future", "next", "rows", "vectors")

    def __init__(self, rows: list[list[int]], future: asyncio.Future[np.ndarray]) -> None:
        self.rows, self.future, self.next = rows, future, 0
        self.vectors: list[np.ndarray] = []


class BatchingEncoder:
    """The embedding model as the HTTP process's requests see it: its tokenizer, and its engine (``model``), which
    runs the rows of concurrent requests together, up to ``max_batch`` rows a run, one run at a time. A new request
    waits up to ``wait`` seconds for others to join. Requests take turns, a slice of rows each, so that a big one
    does not hold back small ones; a request whose client went away is dropped."""

    #: What this side packet makes its graph serve (:attr:`~ovserve.server.servables.Servable.kind`).
    model_kind: ClassVar[str] = "embeddings"

    def __init__(self, model: Embedder, tokenizer: EncoderTokenizer | None = None, max_batch: int = 32,
                 wait: float = 0.002, truncate: bool = False) -> None:
        self.model = model
        #: Texts to token ids (``None`` for a model that takes token ids only).
        self.tokenizer = tokenizer
        #: Whether inputs longer than the model takes are cut (else refused).
        self.truncate = truncate
        self.max_batch = max_batch
        self.wait = wait
        #: How many numbers an embedding has.
        self.dimensions = model.dimensions
        self._pending: list[_Pending] = []
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None

    async def embed(self, token_lists: list[list[int]]) -> np.ndarray:
        """The embeddings of ``token_lists``, batched with whatever else is waiting."""
        if self._worker is None or self._worker.done():
            self._arrived = asyncio.Event()
            self._worker = asyncio.ensure_future(self._run())
        assert self._arrived is not None
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(token_lists, future))
        self._arrived.set()
        return await future

    async def _run(self) -> None:
        assert self._arrived is not None
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            if self.wait > 0 and sum(len(p.rows) - p.next for p in self._pending) < self.max_batch:
                await asyncio.sleep(self.wait)  # let others join this run
            while self._pending:
                await self._run_once()

    def _take(self) -> list[tuple[_Pending, int, int]]:
        """Up to ``max_batch`` rows, a fair share from each live request in turn: (request, start, end)."""
        self._pending = [p for p in self._pending if not p.future.done()]
        taken: list[tuple[_Pending, int, int]] = []
        room = self.max_batch
        while room and any(p.next < len(p.rows) for p in self._pending):
            live = [p for p in self._pending if p.next < len(p.rows)]
            share = max(1, room // len(live))
            for request in live:
                count = min(share, len(request.rows) - request.next, room)
                if count:
                    taken.append((request, request.next, request.next + count))
                    request.next += count
                    room -= count
        return taken

    async def _run_once(self) -> None:
        taken = self._take()
        if not taken:
            return
        rows = [tokens for request, start, end in taken for tokens in request.rows[start:end]]
        try:
            vectors = await self.model.embed(rows)
        except Exception as error:  # every request in this run gets the failure; the worker goes on
            for request, _, _ in taken:
                if not request.future.done():
                    request.future.set_exception(error)
            return
        offset = 0
        for request, start, end in taken:
            request.vectors.append(vectors[offset:offset + end - start])
            offset += end - start
            if request.next == len(request.rows) and end == len(request.rows) and not request.future.done():
                request.future.set_result(np.concatenate(request.vectors))

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
