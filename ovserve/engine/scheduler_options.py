"""The continuous-batching engine's optional scheduler features, as plain data for the engine process.

OVMS's LLM graph sets three of them in the node's options (``src/llm/llm_calculator.proto``), and ovserve takes the
same fields (``calculators/llm/engine_options.py`` checks them):

- :class:`DraftModel`: speculative decoding, a smaller model proposing tokens that the main model checks in one
  pass (``draft_models_path``, ``draft_device``, ``draft_*`` scheduler settings);
- :class:`CacheEviction`: a bound on each sequence's KV cache, the least attended tokens evicted during generation
  (``SchedulerConfig.cache_eviction_config``; nothing is evicted during prefill);
- :class:`SparseAttention`: prefill that attends to part of a long prompt (``SchedulerConfig.sparse_attention_config``,
  TRISHAPE or XATTENTION).

Each is a frozen dataclass pickled to the engine process; its ``apply`` / ``genai`` method, called there at load, builds
the OpenVINO GenAI object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DraftModel:
    """A draft model for speculative decoding: an OpenVINO IR folder and the scheduler it runs with (OVMS: the main
    model's settings where the graph gives no ``draft_*`` of its own)."""

    path: str
    device: str
    max_num_batched_tokens: int
    cache_size: int
    max_num_seqs: int
    dynamic_split_fuse: bool
    enable_prefix_caching: bool

    def genai(self) -> Any:
        """The ``draft_model`` property the main pipeline's plugin config takes (in the engine process)."""
        import openvino_genai

        scheduler = openvino_genai.SchedulerConfig()
        scheduler.max_num_batched_tokens = self.max_num_batched_tokens
        scheduler.cache_size = self.cache_size
        scheduler.max_num_seqs = self.max_num_seqs
        scheduler.dynamic_split_fuse = self.dynamic_split_fuse
        scheduler.enable_prefix_caching = self.enable_prefix_caching
        return openvino_genai.draft_model(self.path, self.device, scheduler_config=scheduler)


@dataclass(frozen=True)
class KVCrush:
    """KVCrush (``kv_crush_config``): ``budget`` blocks of evicted tokens kept as representatives, chosen against an
    anchor point."""

    budget: int = 0
    anchor_point_mode: str = "RANDOM"
    rng_seed: int = 0


@dataclass(frozen=True)
class CacheEviction:
    """``cache_eviction_config``: sizes in tokens (the cache keeps ``start_size`` first and ``recent_size`` last
    tokens, and evicts from between them once a sequence holds ``max_cache_size``)."""

    start_size: int
    recent_size: int
    max_cache_size: int
    aggregation_mode: str = "NORM_SUM"
    apply_rotation: bool = False
    snapkv_window_size: int = 8
    kv_crush: KVCrush | None = None

    def genai(self) -> Any:
        import openvino_genai as g

        crush = g.KVCrushConfig() if self.kv_crush is None else g.KVCrushConfig(
            self.kv_crush.budget, g.KVCrushAnchorPointMode.__members__[self.kv_crush.anchor_point_mode],
            self.kv_crush.rng_seed)
        return g.CacheEvictionConfig(self.start_size, self.recent_size, self.max_cache_size,
                                     g.AggregationMode.__members__[self.aggregation_mode], self.apply_rotation,
                                     self.snapkv_window_size, crush)


@dataclass(frozen=True)
class SparseAttention:
    """``sparse_attention_config``: the mode and the knobs the graph sets (``None``: OpenVINO GenAI's default)."""

    mode: str = "TRISHAPE"
    num_last_dense_tokens_in_prefill: int | None = None
    num_retained_start_tokens_in_cache: int | None = None
    num_retained_recent_tokens_in_cache: int | None = None
    xattention_threshold: float | None = None
    xattention_block_size: int | None = None
    xattention_stride: int | None = None

    def genai(self) -> Any:
        import openvino_genai as g

        config = g.SparseAttentionConfig(mode=g.SparseAttentionMode.__members__[self.mode])
        for name in ("num_last_dense_tokens_in_prefill", "num_retained_start_tokens_in_cache",
                     "num_retained_recent_tokens_in_cache", "xattention_threshold", "xattention_block_size",
                     "xattention_stride"):
            if getattr(self, name) is not None:
                setattr(config, name, getattr(self, name))
        return config


def apply_scheduler_options(scheduler: Any, eviction: CacheEviction | None, sparse: SparseAttention | None) -> None:
    """Switch on cache eviction and sparse attention in a ``SchedulerConfig`` where the settings ask for them."""
    if eviction is not None:
        scheduler.use_cache_eviction = True
        scheduler.cache_eviction_config = eviction.genai()
    if sparse is not None:
        scheduler.use_sparse_attention = True
        scheduler.sparse_attention_config = sparse.genai()
