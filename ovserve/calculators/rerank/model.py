"""The reranker of a graph: its engine process (the model) and, in the HTTP process, its tokenizer and limits."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from ovserve import Resource, ResourceContext, SideOutput
from ovserve.calculators.engine_resource import EngineBacked, PluginConfig
from ovserve.calculators.rerank.inputs import QWEN3_INSTRUCTION, RerankInputs
from ovserve.engine.call_client import CallEngine
from ovserve.engine.process import DEFAULT_STEP_TIMEOUT
from ovserve.engine.rerank_kind import DEFAULT_MAX_BATCH, DEFAULT_MAX_BATCH_TOKENS, RerankJob, RerankSpec, logits_bound
from ovserve.engine.settings import IR_MODEL, IR_TOKENIZER
from ovserve.errors import RequestError
from ovserve.store.catalog import models_path_in_graph

log = logging.getLogger("ovserve.calculators")

#: The pair limit when the graph sets no max_position_embeddings: the model's context, at most this (longer pairs
#: of a Qwen3-Reranker, 40,960 tokens, would hold a CPU for minutes).
DEFAULT_MAX_LENGTH_CAP = 8192
#: The most tokens one request may have scored, pairs summed: more would hold the engine for minutes.
DEFAULT_MAX_REQUEST_TOKENS = 300_000
#: A request is one engine job, and the requests behind it wait while it runs: by default one may hold the engine for
#: at most this many seconds, at the speed measured at load (a real reranker on 2 CPU cores scores a few hundred
#: tokens a second, a Qwen3-Reranker tens: 300,000 tokens would hold it for many minutes).
MAX_REQUEST_SECONDS = 150.0


class RerankCalculatorOVOptions(BaseModel):
    """OVMS's ``RerankCalculatorOVOptions`` (``models_path``, ``max_allowed_chunks``, ``max_position_embeddings``,
    ``target_device``, ``plugin_config``), plus ovserve's bounds on the engine's work."""

    model_config = ConfigDict(extra="forbid")

    models_path: str = Field(description="a reranker IR folder (openvino_model.xml, openvino_tokenizer.xml), "
                                         "relative to the graph file, or a model in the store")
    max_allowed_chunks: int = Field(10_000, ge=1, description="the most documents one request may rank (OVMS "
                                                               "counts chunks; ovserve does not split documents)")
    max_position_embeddings: int | None = Field(
        None, ge=2, description="the most tokens of a query and document pair; longer documents are cut (rerank) or "
                                "refused (score). Default: the model's context, at most 8192 (and, for a causal-LM "
                                "reranker, what one call may hold)")
    target_device: str = "CPU"
    plugin_config: PluginConfig = Field(default_factory=dict, description="OpenVINO properties (JSON)")
    max_batch: int = Field(DEFAULT_MAX_BATCH, ge=1, description="ovserve's own: the most documents in one run of "
                                                                "a Qwen3-style model (a cross-encoder runs one)")
    max_batch_tokens: int = Field(DEFAULT_MAX_BATCH_TOKENS, ge=1,
                                  description="ovserve's own: the most tokens in one run, padding included (default "
                                              "for a causal-LM reranker: as many as 1 GiB of its logits hold)")
    max_request_tokens: int = Field(DEFAULT_MAX_REQUEST_TOKENS, ge=1,
                                    description="ovserve's own: the most tokens one request may have scored (default: "
                                                "300000, or what the engine scores in 150 s here, measured at load, "
                                                "if less)")
    concurrency: int = Field(1, ge=1, description="ovserve's own: requests run at once, each on a compiled copy of "
                                                  "the model")
    max_queue: int = Field(64, ge=0, description="ovserve's own: requests that may wait for the model; more get 503")
    instruction: str = Field(QWEN3_INSTRUCTION, description="ovserve's own: the instruction in a Qwen3-Reranker's "
                                                            "prompt")
    engine_step_timeout: float = Field(DEFAULT_STEP_TIMEOUT, ge=0, description="ovserve's own: seconds the engine "
                                       "may stay silent with requests in flight before it is restarted (0: never)")


@dataclass
class Reranker:
    """What a :class:`~ovserve.calculators.rerank.calculator.RerankCalculator` scores with: the engine (the model,
    in its own process), the inputs preparer (the tokenizer) and the most documents a request may have."""

    #: What this side packet makes its graph serve (:attr:`~ovserve.server.servables.Servable.kind`).
    model_kind: ClassVar[str] = "rerank"

    engine: CallEngine
    inputs: RerankInputs
    max_documents: int


def pair_limit(folder: Path, given: int | None, per_call: int | None = None) -> int:
    """The most tokens of a pair: ``given``, else the smallest of the model's context (``config.json``), its
    tokenizer's ``model_max_length``, ``per_call`` (what one call may hold) and :data:`DEFAULT_MAX_LENGTH_CAP`."""
    if given is not None:
        return given
    limits = [DEFAULT_MAX_LENGTH_CAP, *([per_call] if per_call else [])]
    for name, key in (("config.json", "max_position_embeddings"), ("tokenizer_config.json", "model_max_length")):
        try:
            value = json.loads((folder / name).read_text()).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, int) and value > 0:
            limits.append(value)
    return min(limits)


async def measure_speed(engine: CallEngine, inputs: RerankInputs) -> float | None:
    """The tokens a second the engine scores: two warm-up calls of four documents sized to the pair limit (the first
    compiles what the device compiles on first use), the second timed; ``None`` where no document fits a pair."""
    words = max(1, min(200, inputs.max_length // 8))
    try:
        probe = await asyncio.to_thread(inputs.prepare, ["query"], [0] * 4, ["warm " * words] * 4, fit=True)
    except RequestError:  # a pair limit that leaves no room beside the prompt
        return None
    job = RerankJob(probe.queries[0], tuple(probe.documents), tuple(probe.lengths))
    await engine.call(job)
    started = time.perf_counter()
    await engine.call(job)
    return probe.tokens / max(time.perf_counter() - started, 1e-6)


def request_limit(options: RerankCalculatorOVOptions, speed: float | None, max_length: int) -> int:
    """The most tokens one request may have scored: the graph's ``max_request_tokens`` as given; by default at most
    what the engine scores, at ``speed``, in :data:`MAX_REQUEST_SECONDS` (and at least one pair)."""
    if speed is None:
        return options.max_request_tokens
    in_time = int(speed * MAX_REQUEST_SECONDS)
    if "max_request_tokens" in options.model_fields_set:
        if options.max_request_tokens > 2 * in_time:
            log.warning("max_request_tokens %d: the engine scores %.0f tokens/s here, so one such request holds it "
                        "for %.0f s, and the requests behind it wait", options.max_request_tokens, speed,
                        options.max_request_tokens / max(speed, 1e-6))
        return options.max_request_tokens
    return min(options.max_request_tokens, max(in_time, max_length))


class RerankModel(EngineBacked, Resource):
    """Starts the reranker's engine process and loads its tokenizer, once per graph load; provides both as
    ``RERANKER``."""

    RERANKER = SideOutput(Reranker, doc="the reranker: its engine and its tokenizer")

    Options = RerankCalculatorOVOptions
    options_type = "mediapipe.RerankCalculatorOVOptions"

    async def open(self, ctx: ResourceContext) -> None:
        options: RerankCalculatorOVOptions = ctx.options
        folder = models_path_in_graph(ctx.base_path, options.models_path)
        if not (folder / IR_MODEL).is_file() or not (folder / IR_TOKENIZER).is_file():
            raise FileNotFoundError(f"models_path '{folder}' is not a reranker IR folder (it needs {IR_MODEL} and "
                                    f"{IR_TOKENIZER}; 'ovserve pull OpenVINO/bge-reranker-base-int8-ov' fetches one)")
        per_call = logits_bound(folder)  # a causal LM's logits, at every position, bound its calls
        batch_tokens = options.max_batch_tokens
        if per_call is not None and "max_batch_tokens" not in options.model_fields_set:
            batch_tokens = min(batch_tokens, per_call)
        max_length = pair_limit(folder, options.max_position_embeddings, per_call)
        spec = RerankSpec(str(folder.resolve()), options.target_device, dict(options.plugin_config),
                          max_length, options.max_batch, batch_tokens, options.concurrency, options.max_queue)
        inputs = await asyncio.to_thread(RerankInputs, folder, max_length, options.max_request_tokens,
                                         options.instruction)
        self.engine = CallEngine(spec, step_timeout=options.engine_step_timeout or None)
        await self.engine.start()
        try:
            speed = await measure_speed(self.engine, inputs)
        except BaseException:  # the engine process is running: stop it, or a failed (re)load leaks it
            await self.engine.stop()
            raise
        inputs.max_request_tokens = request_limit(options, speed, max_length)
        log.info("%s: reranker, %s, calls of at most %d documents and %d tokens; scores %s tokens/s here, at most "
                 "%d tokens a request", folder.name, json.dumps(inputs.describe()), spec.documents_per_call,
                 batch_tokens, "?" if speed is None else f"{speed:.0f}", inputs.max_request_tokens)
        ctx.set(self.RERANKER, Reranker(self.engine, inputs, options.max_allowed_chunks))

