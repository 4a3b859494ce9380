"""The ``LLMEngine`` resource: one engine process and the model's tokenizer, shared by every request."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ovserve import Resource, ResourceContext, SideOutput
from ovserve.calculators.engine_resource import plugin_config_object
from ovserve.calculators.llm.images import MediaPolicy
from ovserve.calculators.llm.reasoning import CLOSE as THINK_CLOSE
from ovserve.calculators.llm.reasoning import OPEN as THINK_OPEN
from ovserve.calculators.llm.reasoning import THINK_PARSERS, choose_reasoning, opens_reasoning
from ovserve.calculators.llm.tool_parsers import PARSERS as TOOL_PARSERS
from ovserve.calculators.llm.tool_parsers import choose as choose_tool_parser
from ovserve.calculators.llm.tool_parsers import special_markers
from ovserve.calculators.llm.types import DEFAULT_MAX_SCORED_TOKENS, GenerationLimits, ModelParsers, VisionLimits
from ovserve.engine.client import EngineClient
from ovserve.engine.cpu import detect_cpu
from ovserve.engine.fingerprint import model_identity, system_fingerprint
from ovserve.engine.generation_config import SamplingDefaults, generation_config_of, load_sampling_defaults
from ovserve.engine.interface import GenerationEngine
from ovserve.engine.process import DEFAULT_STEP_TIMEOUT
from ovserve.engine.scorer import LogitScorer
from ovserve.engine.settings import (
    PROMPT_LOOKUP,
    EngineSettings,
    ModelFiles,
    find_model_files,
    plugin_config_for,
)
from ovserve.engine.tokenizer import TextTokenizer
from ovserve.engine.vision import tokens_per_image
from ovserve.framework.metrics import Histogram
from ovserve.framework.textproto import Message
from ovserve.store.catalog import models_path_in_graph

log = logging.getLogger("ovserve.llm")

DEFAULT_CONTEXT_LENGTH = 4096


class OVMSOptionsNotYetSupported(BaseModel):
    """Options OVMS defines that ovserve accepts, so that OVMS graph files load, but does not act on
    yet; a warning names those a graph sets."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    cache_interval_multiplier: int | None = None
    draft_models_path: str | None = None
    draft_device: str | None = None
    draft_max_num_batched_tokens: int | None = None
    draft_cache_size: int | None = None
    draft_block_size: int | None = None
    draft_max_num_seqs: int | None = None
    draft_dynamic_split_fuse: bool | None = None
    draft_eagle3_mode: bool | None = None
    cache_eviction_config: Message | None = None
    enable_tool_guided_generation: bool | None = None
    sparse_attention_config: Message | None = None
    chat_template_mode: str | None = None


NOT_YET_SUPPORTED = tuple(OVMSOptionsNotYetSupported.model_fields)


class LLMCalculatorOptions(OVMSOptionsNotYetSupported):
    """OVMS's ``mediapipe.LLMCalculatorOptions``, field for field (``src/llm/llm_calculator.proto``)."""

    models_path: str = Field(description="a .gguf file or an OpenVINO IR folder, relative to the graph file, or "
                                         "the name of a model in the model store ('ovserve list')")
    device: str = Field("CPU", description="CPU, GPU, NPU, AUTO, HETERO:..., as OpenVINO names them")
    plugin_config: str | dict[str, Any] = Field("", validate_default=True,
                                                description="OpenVINO properties as a JSON object string")
    cache_size: int = Field(0, ge=0, description="KV cache in GB (0: grow as needed)")
    max_num_seqs: int = Field(256, ge=1, description="most sequences in one engine step")
    max_num_batched_tokens: int = Field(256, ge=1, description="most tokens in one engine step")
    enable_prefix_caching: bool = False
    dynamic_split_fuse: bool = True
    max_tokens_limit: int | None = Field(None, ge=1, description="the most tokens one request may ask for")
    best_of_limit: int = Field(20, ge=1, description="the most answers one request may have generated (n, best_of)")
    max_scored_tokens: int = Field(
        DEFAULT_MAX_SCORED_TOKENS, ge=1,
        description="ovserve's own: the most tokens the scoring pass may compute for one request (top_logprobs, "
                    "completions' logprobs above 0, echo with logprobs): choices x (prompt + max_tokens)")
    reasoning_parser: str | None = Field(
        None, description="how the model marks its reasoning: qwen3 (<think>...</think>), or none (default: "
                          "qwen3 when the chat template mentions <think>)")
    tool_parser: str | None = Field(
        None, description="the model's tool-call format: generic, hermes3, llama3, mistral, pythonic, phi4, or none "
                          "(default: from the chat template)")
    batch_invariant: bool = Field(
        False, description="ovserve's own: a request's output at temperature 0 (or with a seed) is the same alone as "
                           "batched with any others; computes in f32 (CPU only; see the README)")
    engine_step_timeout: float = Field(
        DEFAULT_STEP_TIMEOUT, ge=0,
        description="ovserve's own: seconds without a finished engine step, with requests in flight, after which the "
                    "engine is deemed hung: its requests fail, it is killed and restarted (0: never)")
    pipeline_type: str | None = Field(
        None, description="OVMS's: LM_CB or VLM_CB (the continuous-batching engine, what ovserve runs), LM or VLM "
                          "(OVMS's one-request pipelines: served on the continuous-batching engine, with a log line "
                          "saying so), AUTO; a VLM type needs a vision model folder")
    allowed_local_media_path: str | None = Field(
        None, description="ovserve's own (vLLM's --allowed-local-media-path): a folder whose images chat requests may "
                          "name by local path, relative to the graph file (default: none, local paths refused)")
    allowed_media_domains: str | list[str] | None = Field(
        None, description="ovserve's own: hosts whose http(s) images are fetched, comma-separated or a list, '*' for "
                          "any (default: none, remote images refused)")
    max_images_per_request: int = Field(8, ge=0, description="ovserve's own: the most images one chat request holds")
    max_image_bytes: int = Field(10_000_000, ge=1, description="ovserve's own: the largest image file, in bytes")
    max_image_pixels: int = Field(4096 * 4096, ge=1, description="ovserve's own: the most pixels of one image")
    image_fetch_timeout: float = Field(10.0, gt=0, description="ovserve's own: seconds to fetch a remote image")
    generation_config_path: str | None = Field(
        None, description="generation_config.json with the default sampling settings, relative to the graph file "
                          "(default: the one in the model's folder, if any)")

    @field_validator("plugin_config")
    @classmethod
    def _plugin_config_is_a_json_object(cls, value: str | dict[str, Any]) -> object:
        return plugin_config_object(value)

    @field_validator("plugin_config", mode="after")
    @classmethod
    def _prompt_lookup_is_a_bool(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(value.get(PROMPT_LOOKUP, False), bool):
            raise ValueError(f"plugin_config's '{PROMPT_LOOKUP}' must be true or false (got "
                             f"{value[PROMPT_LOOKUP]!r})")
        return value

    @property
    def prompt_lookup(self) -> bool:
        """Whether the engine decodes with prompt lookup (OVMS's ``plugin_config: {"prompt_lookup": true}``)."""
        return bool(self.plugin_config.get(PROMPT_LOOKUP, False))  # type: ignore[union-attr]


#: OVMS's pipeline types: the continuous-batching ones, and those it runs one request at a time.
BATCHING_PIPELINES = ("LM_CB", "VLM_CB", "AUTO")
ONE_AT_A_TIME_PIPELINES = ("LM", "VLM")


def check_pipeline_type(node: str, pipeline_type: str | None, model: ModelFiles) -> None:
    """Check an OVMS graph's ``pipeline_type`` against the model. Every type runs on the continuous-batching engine:
    ``LM`` and ``VLM`` (OVMS's pipelines that run one request at a time) too, until ovserve has a one-stream engine,
    and a log line says so."""
    if pipeline_type is None:
        return
    kind = pipeline_type.upper()
    if kind not in BATCHING_PIPELINES + ONE_AT_A_TIME_PIPELINES:
        raise ValueError(f"node '{node}': pipeline_type '{pipeline_type}' is not one of "
                         f"{', '.join(BATCHING_PIPELINES + ONE_AT_A_TIME_PIPELINES)}")
    if kind.startswith("VLM") and not model.vision:
        raise ValueError(f"node '{node}': pipeline_type {kind} needs a vision model folder (with "
                         f"openvino_vision_embeddings_model.xml); {model.path} holds a text model")
    if kind in ONE_AT_A_TIME_PIPELINES:
        log.warning("node '%s': pipeline_type %s runs one request at a time in OVMS; ovserve serves it on the "
                    "continuous-batching engine (%s_CB), which batches requests", node, kind, kind)


class LLMEngine(Resource):
    """Starts the model's engine process and loads its tokenizer once per graph load."""

    ENGINE = SideOutput(GenerationEngine, doc="the engine every LLMCalculator submits to")
    TOKENIZER = SideOutput(TextTokenizer, doc="the model's tokenizer (chat template, encode, decode)")
    LIMITS = SideOutput(GenerationLimits, doc="context length, max_tokens_limit and default sampling")
    PARSERS = SideOutput(ModelParsers, doc="the model's tool-call format")
    SCORER = SideOutput(LogitScorer, doc="token alternatives and prompt log-probabilities (an engine process of its "
                                         "own, started on first use)")

    Options = LLMCalculatorOptions
    options_type = "mediapipe.LLMCalculatorOptions"
    runs_in = "engine processes: generation, and scoring once asked"

    async def open(self, ctx: ResourceContext) -> None:
        options: LLMCalculatorOptions = ctx.options
        ignored = [name for name in NOT_YET_SUPPORTED if name in options.model_fields_set]
        if ignored:
            log.warning("node '%s': options not supported yet, ignored: %s", ctx.node, ", ".join(ignored))
        model = find_model_files(models_path_in_graph(ctx.base_path, options.models_path))
        check_pipeline_type(ctx.node, options.pipeline_type, model)
        self.model_digest = await asyncio.to_thread(model_identity, model)
        if options.generation_config_path:
            sampling = load_sampling_defaults(ctx.base_path / options.generation_config_path, required=True)
        else:
            sampling = load_sampling_defaults(generation_config_of(model))
        log.info("%s: default sampling %s", model.display_name, sampling.describe())
        cpu = detect_cpu() if options.device == "CPU" else None
        plugin_config = plugin_config_for(options.device, dict(options.plugin_config),  # type: ignore[arg-type]
                                          batch_invariant=options.batch_invariant, cpu=cpu)
        log.info("%s: device %s%s, plugin config %s, batch-invariant mode %s", model.display_name, options.device,
                 f" ({cpu.describe()})" if cpu else "", json.dumps(plugin_config),
                 "on" if options.batch_invariant else "off")
        settings = EngineSettings(
            model=model,
            device=options.device,
            plugin_config=plugin_config,
            cache_size=options.cache_size,
            max_num_seqs=options.max_num_seqs,
            max_num_batched_tokens=options.max_num_batched_tokens,
            enable_prefix_caching=options.enable_prefix_caching,
            dynamic_split_fuse=options.dynamic_split_fuse,
            batch_invariant=options.batch_invariant,
        )
        self.settings, self.cpu = settings, cpu
        self.engine = EngineClient(settings, step_timeout=options.engine_step_timeout or None)
        self.scorer = LogitScorer(model, device=options.device, budget=2 * options.max_scored_tokens)
        ctx.set(self.SCORER, self.scorer)
        tokenizer_task = asyncio.ensure_future(asyncio.to_thread(TextTokenizer.load, model))
        try:
            await self.engine.start()
        except BaseException:
            await asyncio.gather(tokenizer_task, return_exceptions=True)
            raise
        try:
            self._describe_model(ctx, options, model, sampling, await tokenizer_task)
        except BaseException:  # the engine process is running: stop it, or a failed (re)load leaks it
            await self.scorer.close()
            await self.engine.stop()
            raise

    def _describe_model(self, ctx: ResourceContext, options: LLMCalculatorOptions, model: ModelFiles,
                        sampling: SamplingDefaults, tokenizer: TextTokenizer) -> None:
        """Set the side outputs that come from the tokenizer: the engine's, the parsers and the limits."""
        name = model.display_name
        ctx.set(self.ENGINE, self.engine)
        ctx.set(self.TOKENIZER, tokenizer)
        parsers = choose_tool_parser(options.tool_parser, tokenizer.chat_template)
        reasoning, unknown_reasoning = choose_reasoning(options.reasoning_parser, tokenizer.chat_template)
        markers = [*(TOOL_PARSERS[parsers.tool_parser].markers if parsers.tool_parser else ()),
                   *((THINK_OPEN, THINK_CLOSE) if reasoning else ())]
        parsers = replace(parsers, reasoning_parser=reasoning, marker_tokens=special_markers(tokenizer, markers),
                          reasoning_opened_by_template=bool(reasoning) and opens_reasoning(tokenizer))
        if unknown_reasoning:
            log.warning("node '%s': reasoning_parser '%s' is not implemented (ovserve has %s); the reasoning "
                        "stays in the content", ctx.node, unknown_reasoning, ", ".join(sorted(THINK_PARSERS)))
        elif reasoning:
            log.info("%s: reasoning in the %s format (reasoning_content)", name, reasoning)
        if parsers.unsupported:
            log.warning("node '%s': tool_parser '%s' is not implemented (ovserve has %s); requests with tools will "
                        "be refused", ctx.node, parsers.unsupported, ", ".join(TOOL_PARSERS))
        else:
            log.info("%s: tool calls in the %s format", name, parsers.tool_parser or "no")
        ctx.set(self.PARSERS, parsers)
        context = model.context_length or DEFAULT_CONTEXT_LENGTH
        fingerprint = system_fingerprint(self.model_digest, self.settings, self.cpu, {
            "sampling": sampling, "tool_parser": parsers.tool_parser, "reasoning_parser": parsers.reasoning_parser})
        log.info("%s: system_fingerprint %s", name, fingerprint)
        ctx.set(self.LIMITS, GenerationLimits(context, options.max_tokens_limit, sampling, options.best_of_limit,
                                              options.prompt_lookup, options.max_scored_tokens, fingerprint,
                                              self._vision_limits(ctx, options, model)))

    def _vision_limits(self, ctx: ResourceContext, options: LLMCalculatorOptions,
                       model: ModelFiles) -> VisionLimits | None:
        """A vision model's image settings (``None`` for a text model), logged once."""
        if not model.vision:
            return None
        domains = options.allowed_media_domains or ()
        if isinstance(domains, str):
            domains = [domain.strip() for domain in domains.split(",") if domain.strip()]
        folder = ctx.base_path / options.allowed_local_media_path if options.allowed_local_media_path else None
        policy = MediaPolicy(folder, tuple(domain.lower() for domain in domains), options.max_images_per_request,
                             options.max_image_bytes, options.max_image_pixels, options.image_fetch_timeout)
        vision = VisionLimits(policy, tokens_per_image(model.path))
        log.info("%s: a vision model: images from data URLs%s%s, up to %d per request; %s prompt tokens per image",
                 model.display_name, f", local paths under {folder}" if folder else "",
                 f", fetched from {', '.join(policy.domains)}" if policy.domains else "", policy.max_images,
                 vision.tokens_per_image or "no count of")
        return vision

    async def close(self) -> None:
        await self.scorer.close()
        await self.engine.stop()

    def is_ready(self) -> bool:
        return self.engine.ready

    def metrics(self) -> dict[str, float]:
        return {**self.engine.metrics(), **self.scorer.metrics()}

    def histograms(self) -> dict[str, Histogram]:
        return {"engine_queue_time_seconds": self.engine.queue_time}
