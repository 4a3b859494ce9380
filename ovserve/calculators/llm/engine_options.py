"""OVMS's LLM node options for speculative decoding, KV cache eviction and sparse attention, checked at load.

The fields are those of OVMS's ``LLMCalculatorOptions`` (``src/llm/llm_calculator.proto``), with its defaults; enums
are written as OVMS's text format writes them (``aggregation_mode: SUM``). :func:`draft_model`, :func:`cache_eviction`
and :func:`sparse_attention` turn them into the engine's settings (:mod:`ovserve.engine.scheduler_options`), or
raise ``ValueError`` naming the node and the field when they cannot be served.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ovserve.engine.devices import check_batching_device, check_static_shape_settings, is_npu
from ovserve.engine.scheduler_options import CacheEviction, DraftModel, KVCrush, SparseAttention
from ovserve.engine.scoring_model import ScoringModelError, scoring_model_path
from ovserve.engine.settings import ModelFiles, find_model_files
from ovserve.store.catalog import models_path_in_graph

log = logging.getLogger("ovserve.llm")

#: OVMS's draft scheduler options; each defaults to the main model's setting of the same name.
DRAFT_SCHEDULER = ("max_num_batched_tokens", "cache_size", "max_num_seqs", "dynamic_split_fuse")
DRAFT_OPTIONS = ("draft_device", *(f"draft_{name}" for name in DRAFT_SCHEDULER), "draft_block_size",
                 "draft_eagle3_mode")


class KVCrushOptions(BaseModel):
    """OVMS's ``KVCrushConfig``."""

    model_config = ConfigDict(extra="forbid")

    budget: int = Field(0, ge=0, description="blocks of evicted tokens kept as representatives")
    anchor_point_mode: Literal["RANDOM", "ZEROS", "ONES", "MEAN", "ALTERNATING"] = "RANDOM"
    rng_seed: int = Field(0, ge=0)


class CacheEvictionOptions(BaseModel):
    """OVMS's ``CacheEvictionConfig``: sizes in tokens, each a multiple of the KV cache block (16 tokens on CPU, 32
    on GPU), ``max_cache_size`` above ``start_size + recent_size``."""

    model_config = ConfigDict(extra="forbid")

    aggregation_mode: Literal["SUM", "NORM_SUM"] = "NORM_SUM"
    start_size: int = Field(ge=0, description="the first tokens of a sequence, never evicted")
    recent_size: int = Field(ge=0, description="the last tokens, never evicted")
    max_cache_size: int = Field(ge=1, description="the most tokens a sequence keeps in the cache")
    apply_rotation: bool = False
    snapkv_window_size: int = Field(8, ge=0)
    kv_crush_config: KVCrushOptions | None = None

    @model_validator(mode="after")
    def _sizes_leave_room_to_evict(self) -> CacheEvictionOptions:
        if self.max_cache_size <= self.start_size + self.recent_size:
            raise ValueError(f"max_cache_size ({self.max_cache_size}) must be above start_size + recent_size "
                             f"({self.start_size} + {self.recent_size}): the tokens between them are the ones evicted")
        return self

    @property
    def prompt_gap(self) -> tuple[int, int] | None:
        """The prompt lengths the engine fails on (:func:`~ovserve.calculators.llm.tokenize.check_eviction_gap`)."""
        if self.snapkv_window_size <= 1:
            return None
        return self.start_size + 1, self.start_size + self.snapkv_window_size - 1

    def settings(self) -> CacheEviction:
        crush = self.kv_crush_config
        return CacheEviction(self.start_size, self.recent_size, self.max_cache_size, self.aggregation_mode,
                             self.apply_rotation, self.snapkv_window_size,
                             KVCrush(crush.budget, crush.anchor_point_mode, crush.rng_seed) if crush else None)


class SparseAttentionOptions(BaseModel):
    """OVMS's ``SparseAttentionConfig``: the fields left out take OpenVINO GenAI's defaults."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["TRISHAPE", "XATTENTION"] = "TRISHAPE"
    num_last_dense_tokens_in_prefill: int | None = Field(None, ge=0)
    num_retained_start_tokens_in_cache: int | None = Field(None, ge=0)
    num_retained_recent_tokens_in_cache: int | None = Field(None, ge=0)
    xattention_threshold: float | None = Field(None, gt=0, le=1)
    xattention_block_size: int | None = Field(None, ge=1)
    xattention_stride: int | None = Field(None, ge=1)

    def settings(self) -> SparseAttention:
        return SparseAttention(**self.model_dump())


#: OpenVINO GenAI's KV cache block on CPU, in tokens (2026.4): cache eviction's sizes must be multiples of it.
CPU_BLOCK_SIZE = 32


def check_cache_eviction(node: str, eviction: CacheEvictionOptions | None, device: str) -> None:
    """Raise ``ValueError`` naming the field whose size is not a whole number of the CPU's KV cache blocks: OpenVINO
    GenAI loads such a config, then fails the first engine step (every request in it) saying so. Other devices'
    block sizes are left to OpenVINO GenAI (not tested here)."""
    if eviction is None or device != "CPU":
        return
    for name in ("start_size", "recent_size", "max_cache_size"):
        value = getattr(eviction, name)
        if value % CPU_BLOCK_SIZE:
            below = value // CPU_BLOCK_SIZE * CPU_BLOCK_SIZE
            raise ValueError(f"node '{node}': cache_eviction_config.{name} is {value}, not a multiple of the CPU's KV "
                             f"cache block of {CPU_BLOCK_SIZE} tokens: use {below} or {below + CPU_BLOCK_SIZE}")
    if eviction.apply_rotation:
        # GenAI 2026.4 on CPU: a 357-token chat prompt failed the first decode step ("Check '*roi_end <= *max_dim'
        # failed"), once with the heap corrupted ("corrupted size vs. prev_size").
        raise ValueError(f"node '{node}': cache_eviction_config.apply_rotation: true is not supported on CPU: "
                         f"OpenVINO GenAI failed engine steps with it (and corrupted its memory once); set it false")
    if eviction.start_size == 0:
        raise ValueError(f"node '{node}': cache_eviction_config.start_size must be at least one block "
                         f"({CPU_BLOCK_SIZE} tokens): OpenVINO GenAI refuses 0")


def draft_model(node: str, base_path: Path, options: Any) -> DraftModel | None:
    """The draft model the node's options ask for (``None`` without ``draft_models_path``).

    ``draft_models_path`` is relative to the graph file, as in OVMS, or names a model in the store. A ``.gguf`` draft is
    converted once to OpenVINO IR (OpenVINO GenAI's draft model reads IR only), as the logit scorer's model is.
    Raises ``ValueError`` for ``draft_*`` options without a draft, a setting the draft cannot be served with, or a
    draft that is not a text model."""
    given = [name for name in DRAFT_OPTIONS if name in options.model_fields_set]
    if not options.draft_models_path:
        if given:
            raise ValueError(f"node '{node}': {', '.join(given)} set a draft model's engine, but draft_models_path "
                             f"is not given: add draft_models_path, or drop them")
        return None
    refuse_with_draft(node, options)
    files = find_model_files(models_path_in_graph(base_path, options.draft_models_path))
    if files.vision:
        raise ValueError(f"node '{node}': draft_models_path {files.path} is a vision model; a draft model is a text "
                         f"model with the main model's vocabulary")
    if files.kind == "gguf":
        try:
            folder = str(scoring_model_path(files).parent)
        except ScoringModelError as error:
            raise ValueError(f"node '{node}': draft_models_path {files.path}: {error}") from None
        log.info("node '%s': the draft %s runs as its OpenVINO IR, %s", node, files.path.name, folder)
    else:
        folder = str(files.path)
    if options.draft_block_size is not None:
        log.warning("node '%s': draft_block_size has no effect: OpenVINO GenAI picks the KV cache block size per "
                    "device (OVMS does not pass it on either)", node)
    scheduler = {name: getattr(options, f"draft_{name}") if getattr(options, f"draft_{name}") is not None
                 else getattr(options, name) for name in DRAFT_SCHEDULER}
    return DraftModel(path=folder, device=options.draft_device or options.device,
                      enable_prefix_caching=options.enable_prefix_caching, **scheduler)


def refuse_with_draft(node: str, options: Any) -> None:
    """Raise ``ValueError`` for what a draft model is not served with: Eagle-3 drafts, prompt lookup, the prefix cache,
    cache eviction, batch-invariant mode."""
    if options.draft_eagle3_mode:
        raise ValueError(f"node '{node}': draft_eagle3_mode is not supported: ovserve serves draft models that are "
                         f"whole language models; set it false or drop it")
    if options.prompt_lookup:
        raise ValueError(f"node '{node}': draft_models_path and plugin_config's prompt_lookup both propose tokens; "
                         f"the engine takes one of them: drop one")
    if options.enable_prefix_caching:
        # GenAI 2026.4, 4 sampled requests of one prompt, each cancelled partway (as a client that goes away, or
        # max_tokens reached before the engine ends it): 5 of 15 rounds failed a step ("Check 'content_length <=
        # prompt_ids.size() + m_generated_ids.size()' failed"), every request in it with it; 0 of 15 without the cache.
        raise ValueError(f"node '{node}': enable_prefix_caching cannot be combined with draft_models_path: OpenVINO "
                         f"GenAI's speculative decoding failed engine steps when a request was cancelled with the "
                         f"prefix cache on: set enable_prefix_caching: false")
    if options.cache_eviction_config is not None:
        # GenAI 2026.4: the first step failed ("Total number of aggregated SnapKV scores during prefill phase may not
        # be larger than the configured SnapKV window size"), and the engine could not step again.
        raise ValueError(f"node '{node}': cache_eviction_config cannot be combined with draft_models_path: OpenVINO "
                         f"GenAI's speculative decoding fails its first step with cache eviction: drop one")
    if options.batch_invariant:
        raise ValueError(f"node '{node}': batch_invariant cannot be combined with draft_models_path: speculative "
                         f"decoding checks a varying number of proposed tokens in one pass, and that its greedy output "
                         f"does not depend on the batch has not been established: drop one")


#: OVMS's pipeline types: the continuous-batching ones, and those it runs one request at a time.
BATCHING_PIPELINES = ("LM_CB", "VLM_CB", "AUTO")
ONE_AT_A_TIME_PIPELINES = ("LM", "VLM")


def check_pipeline_type(node: str, pipeline_type: str | None, model: ModelFiles, device: str = "CPU",
                        plugin_config: Mapping[str, Any] | None = None) -> bool:
    """Check an OVMS graph's ``pipeline_type`` and ``device`` against the model and each other (``ValueError`` says
    what is wrong), and say whether the model runs on the stateful pipeline, one request at a time: for ``LM`` and
    ``VLM``, and for an NPU when the type is left open, as OVMS chooses; else on the continuous-batching engine."""
    kind = (pipeline_type or "AUTO").upper()
    if kind not in BATCHING_PIPELINES + ONE_AT_A_TIME_PIPELINES:
        raise ValueError(f"node '{node}': pipeline_type '{pipeline_type}' is not one of "
                         f"{', '.join(BATCHING_PIPELINES + ONE_AT_A_TIME_PIPELINES)}")
    if kind.startswith("VLM") and not model.vision:
        raise ValueError(f"node '{node}': pipeline_type {kind} needs a vision model folder (with "
                         f"openvino_vision_embeddings_model.xml); {model.path} holds a text model")
    stateful = kind in ONE_AT_A_TIME_PIPELINES or (kind == "AUTO" and is_npu(device))
    try:
        check_static_shape_settings(device, plugin_config or {})
        if not stateful:
            check_batching_device(device)
    except ValueError as error:
        raise ValueError(f"node '{node}': {error}") from None
    return stateful
