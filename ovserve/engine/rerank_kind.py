"""The rerank kind: a cross-encoder (bge-reranker, ms-marco-MiniLM, ...) or a Qwen3-Reranker-style causal LM on
OpenVINO GenAI's ``TextRerankPipeline``, behind the engine boundary.

A job scores (query, document) pairs: :class:`RerankJob` returns ``(index, score)`` pairs best first (Cohere's
rerank), :class:`ScoreJob` one score per pair in the order given (vLLM's score). The pipeline runs each call as one
batch, so the :class:`RerankRunner` splits a job's documents into batches bounded in documents and in padded tokens
(the front end sends each document's token count), and maps the scores GenAI returns (sorted by score, indexed within
the batch) back to the documents they belong to.

No model weights are in the HTTP process: the front end (``calculators/rerank``) holds only the tokenizer.
"""

from __future__ import annotations

import json
import queue
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ovserve.engine.kinds import CallCore, CallJob, CallSignal, EngineCore, EngineSpec

#: Default bounds of one pipeline call: documents, and padded tokens (documents x the longest pair).
DEFAULT_MAX_BATCH = 32
DEFAULT_MAX_BATCH_TOKENS = 16_384
#: Documents in one call of a cross-encoder. GenAI pairs the query with a call's documents by broadcasting it
#: (``Tokenizer.encode([query], documents)``), and with openvino-tokenizers 2026.4.1 that corrupts the heap once a
#: call has three documents or more and the query is longer than one of them (the engine process aborts: ``double
#: free or corruption``; found by a fuzzer). One or two documents a call passed 1,600 random trials under glibc's heap
#: checks; one a call is what ovserve sends. Qwen3-style rerankers join query and document as one text: no pairs.
PAIRED_DOCUMENTS_PER_CALL = 1
#: The memory one call of a causal-LM reranker may take for its logits: GenAI's pipeline computes the whole
#: vocabulary's logits at every position (float32) before it reads the last token's "yes" and "no".
LOGITS_BUDGET_BYTES = 1 << 30


@dataclass(frozen=True)
class RerankSpec(EngineSpec):
    """A reranker's engine: which folder, on which device, and how much work one call and the queue may hold."""

    folder: str
    device: str = "CPU"
    plugin_config: dict[str, Any] = field(default_factory=dict)
    #: The most tokens of one (query, document) pair; GenAI truncates beyond it (the front end keeps pairs within).
    max_length: int = 512
    max_batch: int = DEFAULT_MAX_BATCH
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS
    #: Calls run at once, each on a pipeline of its own (a compiled copy of the model each).
    concurrency: int = 1
    #: Jobs that may wait beyond those running; more are refused with 503.
    max_queue: int = 64

    one_call = True

    @property
    def name(self) -> str:
        return Path(self.folder).name

    @property
    def location(self) -> str:
        return self.folder

    @property
    def max_in_flight(self) -> int:
        return self.concurrency + self.max_queue

    @property
    def documents_per_call(self) -> int:
        """``max_batch``, or :data:`PAIRED_DOCUMENTS_PER_CALL` where GenAI pairs query and documents."""
        return self.max_batch if is_qwen3(Path(self.folder)) else min(self.max_batch, PAIRED_DOCUMENTS_PER_CALL)

    def load(self) -> EngineCore:
        import openvino_genai as ov_genai

        from ovserve.engine.devices import checked_device

        device = checked_device(self.device)
        config = ov_genai.TextRerankPipeline.Config()
        config.top_n = self.documents_per_call  # every document of a call comes back
        config.max_length = self.max_length
        pipelines = [ov_genai.TextRerankPipeline(self.folder, device, config, **self.plugin_config)
                     for _ in range(self.concurrency)]
        return CallCore(RerankRunner(pipelines, self.documents_per_call, self.max_batch_tokens), self.concurrency)


def plan_batches(lengths: Sequence[int], max_batch: int, max_batch_tokens: int) -> list[list[int]]:
    """The documents' indexes in pipeline calls: longest first, so that each call pads little, each call at most
    ``max_batch`` documents and (documents x its longest) at most ``max_batch_tokens`` (a longer one goes alone)."""
    order = sorted(range(len(lengths)), key=lambda index: -lengths[index])
    batches: list[list[int]] = []
    for index in order:
        batch = batches[-1] if batches else None
        if batch is None or len(batch) >= max_batch or (len(batch) + 1) * lengths[batch[0]] > max_batch_tokens:
            batches.append([index])
        else:
            batch.append(index)
    return batches


class RerankRunner:
    """What the rerank core's calls run on: the pipelines (one per concurrent call) and the batch bounds."""

    def __init__(self, pipelines: list[Any], max_batch: int, max_batch_tokens: int) -> None:
        self.max_batch = max_batch
        self.max_batch_tokens = max_batch_tokens
        self._free: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for pipeline in pipelines:
            self._free.put(pipeline)

    @contextmanager
    def pipeline(self) -> Iterator[Any]:
        """A pipeline no other call is using (GenAI's pipeline holds one inference request)."""
        pipeline = self._free.get()
        try:
            yield pipeline
        finally:
            self._free.put(pipeline)

    def score(self, query: str, documents: Sequence[str], lengths: Sequence[int],
              cancelled: CallSignal) -> list[float] | None:
        """Each document's score against ``query``, in the documents' order; ``None`` if cancelled meanwhile. It asks
        ``cancelled`` before each call of the pipeline, which also shows the engine that the job goes on."""
        scores: list[float | None] = [None] * len(documents)
        with self.pipeline() as pipeline:
            for batch in plan_batches(lengths, self.max_batch, self.max_batch_tokens):
                if cancelled.is_set():
                    return None
                found = pipeline.rerank(query, [documents[index] for index in batch])
                for position, score in found:
                    if not 0 <= position < len(batch) or scores[batch[position]] is not None:
                        raise RuntimeError(f"the rerank pipeline returned index {position} for a batch of "
                                           f"{len(batch)} documents")
                    scores[batch[position]] = float(score)
                if len(found) != len(batch):
                    raise RuntimeError(f"the rerank pipeline scored {len(found)} of {len(batch)} documents")
        return scores  # type: ignore[return-value]  # every one was set above


@dataclass(frozen=True)
class RerankJob(CallJob):
    """Cohere's rerank: the documents' ``(index, score)`` pairs, best first (ties in the documents' order), the
    ``top_n`` best (all if ``None``). ``lengths``: each pair's tokens, as the front end counted them."""

    query: str
    documents: tuple[str, ...]
    lengths: tuple[int, ...]
    top_n: int | None = None

    def run(self, pipeline: RerankRunner, emit: Any, cancelled: CallSignal) -> list[tuple[int, float]] | None:
        scores = pipeline.score(self.query, self.documents, self.lengths, cancelled)
        if scores is None:
            return None
        ranked = sorted(enumerate(scores), key=lambda pair: -pair[1])
        return ranked[: self.top_n] if self.top_n is not None else ranked


@dataclass(frozen=True)
class ScoreJob(CallJob):
    """vLLM's score: pair ``i`` is (``queries[query_of[i]]``, ``documents[i]``); its score comes back at ``i``."""

    queries: tuple[str, ...]
    query_of: tuple[int, ...]
    documents: tuple[str, ...]
    lengths: tuple[int, ...]

    def run(self, pipeline: RerankRunner, emit: Any, cancelled: CallSignal) -> list[float] | None:
        groups: dict[int, list[int]] = {}
        for index, owner in enumerate(self.query_of):
            groups.setdefault(owner, []).append(index)
        scores: list[float] = [0.0] * len(self.documents)
        for owner, pairs in groups.items():
            found = pipeline.score(self.queries[owner], [self.documents[i] for i in pairs],
                                   [self.lengths[i] for i in pairs], cancelled)
            if found is None:
                return None
            for index, score in zip(pairs, found, strict=True):
                scores[index] = score
        return scores


# --- which folders hold a reranker -------------------------------------------------------------------------------

#: sentence-transformers module types that make a cross-encoder (a reranker), not a bi-encoder.
CROSS_ENCODER_MODULES = ("CrossEncoder", "LogitScore")


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def is_reranker(folder: Path) -> bool:
    """Whether ``folder`` holds a reranker, as OVMS tells one: a sentence-transformers ``modules.json`` with a
    cross-encoder module; else ``config.json`` architectures ending in ``ForSequenceClassification``; else a
    ``Qwen3ForCausalLM`` whose folder name says ``rerank`` (Qwen3-Reranker is a causal LM, and only its name says
    so). ``ovserve serve --task rerank`` serves any other folder as one."""
    modules = _json(folder / "modules.json")
    if isinstance(modules, list):
        types = [str(module.get("type", "")) for module in modules if isinstance(module, dict)]
        return any(kind in type_ for type_ in types for kind in CROSS_ENCODER_MODULES)
    config = _json(folder / "config.json")
    architectures = config.get("architectures") if isinstance(config, dict) else None
    if not isinstance(architectures, list):
        return False
    if any(str(name).endswith("ForSequenceClassification") for name in architectures):
        return True
    return "Qwen3ForCausalLM" in architectures and "rerank" in folder.resolve().name.lower()


def logits_bound(folder: Path) -> int | None:
    """For a causal-LM reranker (Qwen3-Reranker), the most tokens one call may hold within
    :data:`LOGITS_BUDGET_BYTES` of logits (1,769 for Qwen3-Reranker's 151,669-token vocabulary); ``None`` for a
    cross-encoder, whose model gives one score a pair."""
    config = _json(folder / "config.json")
    if not isinstance(config, dict):
        return None
    architectures = config.get("architectures")
    vocabulary = config.get("vocab_size")
    if not isinstance(architectures, list) or not isinstance(vocabulary, int) or vocabulary < 1:
        return None
    if not any(str(name).endswith("ForCausalLM") for name in architectures):
        return None
    return max(1, LOGITS_BUDGET_BYTES // (4 * vocabulary))


def is_qwen3(folder: Path) -> bool:
    """Whether GenAI takes the model as Qwen3 (``model_type`` qwen3): it scores the last token's "yes" against "no"
    of query and document concatenated, so the caller writes the prompt around them."""
    config = _json(folder / "config.json")
    return isinstance(config, dict) and config.get("model_type") == "qwen3"
