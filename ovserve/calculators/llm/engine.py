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
from ovserve.calculators.llm.engine_options import (
    CacheEvictionOptions,
    SparseAttentionOptions,
    check_cache_eviction,
    check_pipeline_type,
    draft_model,
)
from ovserve.calculators.llm.images import MediaPolicy
from ovserve.calculators.llm.reasoning import CLOSE as THINK_CLOSE
from ovserve.calculators.llm.reasoning import OPEN as THINK_OPEN
from ovserve.calculators.llm.reasoning import THINK_PARSERS, choose_reasoning, opens_reasoning
from ovserve.calculators.llm.tool_parsers import PARSERS as TOOL_PARSERS
from ovserve.calculators.llm.tool_parsers import choose as choose_tool_parser
from ovserve.calculators.llm.tool_parsers import special_markers
from ovserve.calculators.llm.types import (
    DEFAULT_MAX_SCORED_TOKENS,
    GenerationLimits,
    ModelParsers,
    StatefulLimits,
    VisionLimits,
)
from ovserve.engine.client import EngineClient
from ovserve.engine.cpu import CPUInfo, detect_cpu
from ovserve.engine.devices import max_prompt_tokens
from ovserve.engine.fingerprint import model_identity, system_fingerprint
from ovserve.engine.generation_config import SamplingDefaults, generation_config_of, load_sampling_defaults
from ovserve.engine.interface import GenerationEngine
from ovserve.engine.process import DEFAULT_STEP_TIMEOUT
from ovserve.engine.scheduler_options import DraftModel
from ovserve.engine.scorer import LogitScorer
from ovserve.engine.settings import (
    PROMPT_LOOKUP,
    EngineSettings,
    ModelFiles,
    find_model_files,
    plugin_config_for,
)
from ovserve.engine.stateful_kind import StatefulEngine, StatefulLLMSpec
from ovserve.engine.tokenizer import TextTokenizer
from ovserve.engine.vision import tokens_per_image
from ovserve.framework.metrics import Histogram
from ovserve.store.catalog import models_path_in_graph

log = logging.getLogger("ovserve.llm")

DEFAULT_CONTEXT_LENGTH = 4096


class OVMSOptionsNotYetSupported(BaseModel):
    """Options OVMS defines that ovserve accepts, so that OVMS graph files load, but does not act on
    yet; a warning names those a graph sets."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    cache_interval_multiplier: int | None = None
    chat_template_mode: str | None = None


NOT_YET_SUPPORTED = tuple(OVMSOptionsNotYetSupported.model_fields)


class OVMSEngineFeatures(OVMSOptionsNotYetSupported):
    """OVMS's options for speculative decoding, KV cache eviction, sparse attention and tool-guided generation
    (:mod:`ovserve.calculators.llm.engine_options`)."""

    draft_models_path: str | None = Field(
        None, description="speculative decoding: the draft model (an OpenVINO IR folder or a .gguf, relative to the "
                          "graph file, or a model in the store); it must share the main model's vocabulary")
    draft_device: str | None = Field(None, description="the draft's device (default: the main model's)")
    draft_max_num_batched_tokens: int | None = Field(None, ge=1, description="default: the main model's")
    draft_cache_size: int | None = Field(None, ge=0, description="GB; default: the main model's")
    draft_block_size: int | None = Field(None, ge=1, description="accepted; no effect (OpenVINO picks it)")
    draft_max_num_seqs: int | None = Field(None, ge=1, description="default: the main model's")
    draft_dynamic_split_fuse: bool | None = Field(None, description="default: the main model's")
    draft_eagle3_mode: bool | None = Field(None, description="Eagle-3 drafts: not supported (true is refused)")
    cache_eviction_config: CacheEvictionOptions | None = Field(
        None, description="bound each sequence's KV cache during generation (start/recent/max_cache_size, ...)")
    sparse_attention_config: SparseAttentionOptions | None = Field(
        None, description="prefill attends to part of a long prompt (TRISHAPE or XATTENTION)")
    enable_tool_guided_generation: bool = Field(
        False, description="a tool call the model begins is held to the tools' schemas by constrained decoding")


class LLMCalculatorOptions(OVMSEngineFeatures):
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
        None, description="OVMS's: LM_CB or VLM_CB (the continuous-batching engine), LM or VLM (the stateful pipeline, "
                          "one request at a time), AUTO (default: LM/VLM on NPU, else the batching engine); a VLM type "
                          "needs a vision model folder")
    max_queued_requests: int = Field(
        16, ge=1, description="ovserve's own: on the stateful pipeline (pipeline_type LM or VLM, NPU), the most "
                              "requests held at once, the running one and those waiting behind it (as the speech "
                              "nodes' option); more are refused with 503 and Retry-After")
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


#: The scheduler's options, which the stateful pipeline has no use for (it runs one request, with no paged cache).
SCHEDULER_OPTIONS = ("cache_size", "max_num_seqs", "max_num_batched_tokens", "enable_prefix_caching",
                     "dynamic_split_fuse")


#: The tool-call formats whose calls begin with a tag that constrained decoding can wait for.
GUIDED_FORMATS = ("hermes3", "phi4")


def log_tool_guidance(node: str, tool_parser: str | None) -> None:
    """Say what ``enable_tool_guided_generation`` does for the model's tool-call format."""
    if tool_parser == "generic":
        log.info("node '%s': enable_tool_guided_generation: calls in the generic format are held to the tools' "
                 "schemas with or without it", node)
    elif tool_parser in GUIDED_FORMATS:
        log.info("node '%s': enable_tool_guided_generation: with tool_choice auto, a call the model begins in the %s "
                 "format is held to the tools' schemas", node, tool_parser)
    else:
        log.warning("node '%s': enable_tool_guided_generation has no effect on tool_choice auto in the %s format, "
                    "whose calls begin without a tag to wait for (required and named calls are held to the schemas "
                    "where ovserve can force them)", node, tool_parser or "no")


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
        draft = await self._check_engine(ctx, options, model)
        self.model_digest = await asyncio.to_thread(model_identity, model)
        if options.generation_config_path:
            sampling = load_sampling_defaults(ctx.base_path / options.generation_config_path, required=True)
        else:
            sampling = load_sampling_defaults(generation_config_of(model))
        log.info("%s: default sampling %s", model.display_name, sampling.describe())
        settings, cpu = self._engine_settings(options, model, draft)
        self._log_features(model, settings)
        self.settings, self.cpu = settings, cpu
        self.engine = self._engine(options, settings)
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

    async def _check_engine(self, ctx: ResourceContext, options: LLMCalculatorOptions,
                            model: ModelFiles) -> DraftModel | None:
        """Which pipeline serves the model (``self.stateful``), and the engine options checked against it and the
        device; the draft model, converted if need be."""
        self.stateful = check_pipeline_type(ctx.node, options.pipeline_type, model, options.device,
                                            options.plugin_config)  # type: ignore[arg-type]
        check_cache_eviction(ctx.node, options.cache_eviction_config, options.device)
        draft = await asyncio.to_thread(draft_model, ctx.node, ctx.base_path, options)
        if draft is not None and model.vision:
            raise ValueError(f"node '{ctx.node}': draft_models_path is set for the vision model {model.path}: "
                             f"ovserve serves speculative decoding for text models only")
        batching_only = [name for name in ("draft_models_path", "cache_eviction_config", "sparse_attention_config")
                         if getattr(options, name)]
        if self.stateful and batching_only:
            verb = "needs" if len(batching_only) == 1 else "need"
            raise ValueError(f"node '{ctx.node}': {', '.join(batching_only)} {verb} the continuous-batching engine, "
                             f"and this node runs the stateful pipeline (pipeline_type {options.pipeline_type}, "
                             f"device {options.device}): use pipeline_type LM_CB, or drop them")
        return draft

    @staticmethod
    def _engine_settings(options: LLMCalculatorOptions, model: ModelFiles,
                         draft: DraftModel | None) -> tuple[EngineSettings, CPUInfo | None]:
        """What the engine process is started with: the node's options, with this CPU's plugin defaults."""
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
            draft=draft,
            cache_eviction=options.cache_eviction_config.settings() if options.cache_eviction_config else None,
            sparse_attention=options.sparse_attention_config.settings() if options.sparse_attention_config else None,
        )
        return settings, cpu

    def _engine(self, options: LLMCalculatorOptions, settings: EngineSettings) -> EngineClient | StatefulEngine:
        """The front end of the model's engine: the continuous-batching engine, or the stateful pipeline's."""
        step_timeout = options.engine_step_timeout or None
        if not self.stateful:
            return EngineClient(settings, step_timeout=step_timeout)
        unused = [name for name in SCHEDULER_OPTIONS if name in options.model_fields_set]
        log.info("%s: the stateful pipeline (OpenVINO GenAI's %s), one request at a time, up to %d held%s",
                 settings.model.display_name, "VLMPipeline" if settings.model.vision else "LLMPipeline",
                 options.max_queued_requests, f"; scheduler options it has no use for: {', '.join(unused)}"
                 if unused else "")
        spec = StatefulLLMSpec(settings.model, settings.device, settings.plugin_config, options.max_queued_requests)
        return StatefulEngine(spec, step_timeout=step_timeout)

    @staticmethod
    def _log_features(model: ModelFiles, settings: EngineSettings) -> None:
        """One log line for each optional engine feature the graph switches on."""
        if settings.draft is not None:
            log.info("%s: speculative decoding with the draft model %s on %s", model.display_name,
                     settings.draft.path, settings.draft.device)
        if settings.cache_eviction is not None:
            log.info("%s: KV cache eviction %s", model.display_name, settings.cache_eviction)
        if settings.sparse_attention is not None:
            log.info("%s: sparse attention %s", model.display_name, settings.sparse_attention)

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
                          reasoning_opened_by_template=bool(reasoning) and opens_reasoning(tokenizer),
                          tool_guided=options.enable_tool_guided_generation)
        if options.enable_tool_guided_generation:
            log_tool_guidance(ctx.node, parsers.tool_parser)
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
        eviction = options.cache_eviction_config
        fingerprint = system_fingerprint(self.model_digest, self.settings, self.cpu, {
            "sampling": sampling, "tool_parser": parsers.tool_parser, "reasoning_parser": parsers.reasoning_parser,
            **({"pipeline": "stateful"} if self.stateful else {})})
        log.info("%s: system_fingerprint %s", name, fingerprint)
        ctx.set(self.LIMITS, GenerationLimits(context, options.max_tokens_limit, sampling, options.best_of_limit,
                                              options.prompt_lookup, options.max_scored_tokens, fingerprint,
                                              self._vision_limits(ctx, options, model), self._stateful_limits(options),
                                              speculative=self.settings.draft is not None,
                                              eviction_gap=eviction.prompt_gap if eviction else None))

    def _stateful_limits(self, options: LLMCalculatorOptions) -> StatefulLimits | None:
        """The stateful pipeline's bounds (``None`` on the batching engine)."""
        if not self.stateful:
            return None
        return StatefulLimits(options.device, max_prompt_tokens(options.device, options.plugin_config))  # type: ignore[arg-type]

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
