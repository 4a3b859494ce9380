"""Sentence embeddings on the OpenVINO runtime: tokenize with the model's tokenizer IR, run the encoder, pool
and normalize as the model's sentence-transformers files say, and batch concurrent requests into one run.

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
from typing import Any, Literal

import numpy as np

log = logging.getLogger("ovserve.engine")

Pooling = Literal["CLS", "MEAN", "LAST"]


@dataclass(frozen=True)
class EncoderSettings:
    """How an encoder's outputs become embeddings, and how long its inputs may be."""

    pooling: Pooling = "CLS"
    normalize: bool = True
    max_length: int = 512


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
    limit = read("sentence_bert_config.json").get("max_seq_length") or read("config.json").get(
        "max_position_embeddings") or 512
    return EncoderSettings(pooling, normalize, int(limit))


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


class SentenceEncoder:
    """An encoder IR and its tokenizer IR, compiled on ``device``. Blocking calls: run them in a thread."""

    def __init__(self, folder: Path, device: str = "CPU", properties: dict[str, Any] | None = None,
                 settings: EncoderSettings | None = None) -> None:
        import openvino as ov
        import openvino_tokenizers  # noqa: F401 - registers the tokenizer operations with OpenVINO

        core = ov.Core()
        self.settings = settings or encoder_settings(folder)
        self._tokenizer = core.compile_model(folder / "openvino_tokenizer.xml", "CPU")
        self._model = core.compile_model(folder / "openvino_model.xml", device, properties or {})
        self._inputs = {port.get_any_name() for port in self._model.inputs}
        # one call at a time through each compiled model's request (requests come from several threads)
        self._lock, self._tokenizer_lock = threading.Lock(), threading.Lock()
        self._request = self._model.create_infer_request()
        self.dimensions = int(self._model.outputs[0].get_partial_shape()[-1].get_length())

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Each text's token ids, special tokens included, untruncated."""
        if not texts:
            return []
        with self._tokenizer_lock:
            encoded = self._tokenizer(texts)
        ids, mask = encoded["input_ids"], encoded["attention_mask"]
        return [row[m.astype(bool)].tolist() for row, m in zip(ids, mask, strict=True)]

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


class BatchingEncoder:
    """Collects the token lists of concurrent requests for up to ``wait`` seconds (or ``max_batch`` inputs)
    and embeds them in one run of the model, in a thread; each request gets its own rows back."""

    def __init__(self, encoder: SentenceEncoder, max_batch: int = 32, wait: float = 0.002,
                 truncate: bool = False) -> None:
        self.encoder = encoder
        #: Whether inputs longer than the model takes are cut (else refused).
        self.truncate = truncate
        self.max_batch = max_batch
        self.wait = wait
        self._queue: asyncio.Queue[tuple[list[list[int]], asyncio.Future[np.ndarray]]] | None = None
        self._worker: asyncio.Task[None] | None = None
        #: How many inputs each model run took (for tests and metrics).
        self.batch_sizes: list[int] = []

    async def embed(self, token_lists: list[list[int]]) -> np.ndarray:
        """The embeddings of ``token_lists``, batched with whatever else is waiting."""
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.ensure_future(self._run())
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self._queue.put((token_lists, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            size = len(batch[0][0])
            deadline = asyncio.get_running_loop().time() + self.wait
            while size < self.max_batch:
                timeout = deadline - asyncio.get_running_loop().time()
                if timeout <= 0 and self._queue.empty():
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), max(timeout, 0))
                except TimeoutError:
                    break
                batch.append(item)
                size += len(item[0])
            await self._embed_batch(batch)

    async def _embed_batch(self, batch: list[tuple[list[list[int]], asyncio.Future[np.ndarray]]]) -> None:
        rows = [tokens for token_lists, _ in batch for tokens in token_lists]
        try:
            parts = []
            for start in range(0, len(rows), self.max_batch):  # a big request runs in pieces of max_batch
                chunk = rows[start:start + self.max_batch]
                self.batch_sizes.append(len(chunk))
                parts.append(await asyncio.to_thread(self.encoder.embed, chunk))
            vectors = np.concatenate(parts)
        except Exception as error:  # every waiting request gets the failure; the worker goes on
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        start = 0
        for token_lists, future in batch:
            if not future.done():
                future.set_result(vectors[start:start + len(token_lists)])
            start += len(token_lists)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
