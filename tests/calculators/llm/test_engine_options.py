"""The LLM node's options that are checked against the model before its engine starts."""

import logging

import pytest

from ovserve.calculators.llm.engine_options import check_pipeline_type
from ovserve.engine.settings import find_model_files
from tests.ovms_graphs import ovms_llm_graph
from tests.tiny_models import LLAVA, QWEN3_RERANKER


@pytest.mark.parametrize("pipeline", [None, "VLM_CB", "vlm_cb", "AUTO", "LM_CB"])
def test_batching_pipeline_types_serve_a_vision_model_quietly_on_the_batching_engine(pipeline, caplog):
    with caplog.at_level(logging.WARNING):
        assert check_pipeline_type("llm", pipeline, find_model_files(LLAVA)) is False
    assert not caplog.records


@pytest.mark.parametrize(("pipeline", "device", "stateful"), [
    ("LM", "CPU", True), ("lm", "AUTO", True), ("LM_CB", "CPU", False), (None, "NPU", True), ("AUTO", "NPU.0", True),
    (None, "HETERO:GPU,CPU", False),
])
def test_lm_and_npu_run_on_the_stateful_pipeline_as_ovms_chooses(default_model, pipeline, device, stateful):
    assert check_pipeline_type("llm", pipeline, find_model_files(default_model), device) is stateful


def test_vlm_runs_on_the_stateful_pipeline():
    assert check_pipeline_type("llm", "VLM", find_model_files(LLAVA)) is True


def test_npu_on_the_batching_pipeline_and_its_static_shapes_elsewhere_are_refused(default_model):
    model = find_model_files(default_model)
    with pytest.raises(ValueError, match="node 'llm': device 'NPU': NPU runs language models on the stateful pipeline"):
        check_pipeline_type("llm", "LM_CB", model, "NPU")
    check_pipeline_type("llm", None, model, "NPU", {"MAX_PROMPT_LEN": 2048, "MIN_RESPONSE_LEN": 128})
    with pytest.raises(ValueError, match="MIN_RESPONSE_LEN, NPU's static-shape settings, for device 'CPU'"):
        check_pipeline_type("llm", "LM", model, "CPU", {"MIN_RESPONSE_LEN": 128})


def test_a_vlm_pipeline_on_a_text_model_and_an_unknown_type_fail_the_load():
    with pytest.raises(ValueError, match="needs a vision model folder"):
        check_pipeline_type("llm", "VLM_CB", find_model_files(QWEN3_RERANKER))
    with pytest.raises(ValueError, match="is not one of"):
        check_pipeline_type("llm", "SPEECH", find_model_files(LLAVA))


def test_a_graph_s_device_is_checked_against_the_batching_pipeline_and_its_plugin_config(default_model):
    model = find_model_files(default_model)
    check_pipeline_type("llm", None, model, "AUTO", {"PERFORMANCE_HINT": "LATENCY"})
    with pytest.raises(ValueError, match=r"node 'llm': device 'MULTI:CPU': the continuous-batching pipeline runs on "
                                         r"one execution device"):
        check_pipeline_type("llm", "LM_CB", model, "MULTI:CPU")
    with pytest.raises(ValueError, match=r"node 'llm': plugin_config sets MAX_PROMPT_LEN, NPU's static-shape settings, "
                                         r"for device 'CPU'"):
        check_pipeline_type("llm", None, model, "CPU", {"MAX_PROMPT_LEN": 1024})


# --- OVMS's options for speculative decoding, KV cache eviction and sparse attention ------------------------------



def options_graph(options: str) -> str:
    """OVMS's LLM graph on a .gguf with these option lines."""
    return ovms_llm_graph(f'models_path: "./model.gguf"\n{options}')


def graph_problems(options: str) -> list[str]:
    from ovserve.framework.errors import GraphConfigError
    from ovserve.framework.registry import build_registry
    from ovserve.framework.validation import graph_from_text

    with pytest.raises(GraphConfigError) as caught:
        graph_from_text(options_graph(options), build_registry(entry_points=False), source="graph.pbtxt")
    return [str(problem) for problem in caught.value.problems]


def test_the_options_of_an_ovms_graph_with_every_feature_validate():
    from ovserve.framework.registry import build_registry
    from ovserve.framework.validation import graph_from_text

    options = """draft_models_path: "draft" draft_device: "CPU" draft_max_num_seqs: 8 draft_cache_size: 1
      draft_block_size: 32 draft_dynamic_split_fuse: false draft_max_num_batched_tokens: 512
      cache_eviction_config: { start_size: 32 recent_size: 128 max_cache_size: 672 aggregation_mode: SUM
        apply_rotation: true snapkv_window_size: 8 kv_crush_config: { budget: 2 anchor_point_mode: MEAN } }
      sparse_attention_config: { mode: XATTENTION xattention_threshold: 0.9 xattention_block_size: 64 }
      enable_tool_guided_generation: true"""
    spec = graph_from_text(options_graph(options), build_registry(entry_points=False))
    (engine,) = [resource for resource in spec.resources if resource.name == "LLMExecutor/engine"]
    assert engine.options.draft_device == "CPU" and engine.options.enable_tool_guided_generation
    assert engine.options.cache_eviction_config.settings().kv_crush.anchor_point_mode == "MEAN"
    assert engine.options.sparse_attention_config.settings().xattention_threshold == 0.9


@pytest.mark.parametrize(("options", "field", "words"), [
    ("cache_eviction_config: { start_size: 32 recent_size: 32 max_cache_size: 64 }", "cache_eviction_config",
     "max_cache_size (64) must be above start_size + recent_size (32 + 32)"),
    ("cache_eviction_config: { start_size: 32 recent_size: 32 max_cache_size: 256 aggregation_mode: MAX }",
     "cache_eviction_config.aggregation_mode", "'SUM' or 'NORM_SUM'"),
    ("cache_eviction_config: { start_size: 32 max_cache_size: 256 }", "cache_eviction_config.recent_size",
     "Field required"),
    ("cache_eviction_config: { start_size: 32 recent_size: 32 max_cache_size: 256 kv_crush_config: { budget: -1 } }",
     "cache_eviction_config.kv_crush_config.budget", "greater than or equal to 0"),
    ("sparse_attention_config: { mode: DENSE }", "sparse_attention_config.mode", "'TRISHAPE' or 'XATTENTION'"),
    ("sparse_attention_config: { xattention_threshold: 2 }", "sparse_attention_config.xattention_threshold",
     "less than or equal to 1"),
    ("draft_max_num_seqs: 0", "draft_max_num_seqs", "greater than or equal to 1"),
])
def test_invalid_values_fail_the_load_naming_file_node_and_field(options, field, words):
    (problem,) = graph_problems(options)
    assert problem.startswith("graph.pbtxt:") and "node 'LLMExecutor/engine'" in problem, problem
    assert f"field '{field}'" in problem and words in problem, problem


def engine_options(options: str):
    from ovserve.framework.registry import build_registry
    from ovserve.framework.validation import graph_from_text

    spec = graph_from_text(options_graph(options), build_registry(entry_points=False))
    return next(resource.options for resource in spec.resources if resource.name == "LLMExecutor/engine")


@pytest.mark.parametrize(("options", "words"), [
    ("draft_device: 'CPU' draft_max_num_seqs: 4", "draft_device, draft_max_num_seqs set a draft model's engine, but "
                                                  "draft_models_path is not given"),
    ("draft_models_path: 'd' draft_eagle3_mode: true", "draft_eagle3_mode is not supported"),
    ("draft_models_path: 'd' plugin_config: '{\"prompt_lookup\": true}'", "the engine takes one of them"),
    ("draft_models_path: 'd' batch_invariant: true", "batch_invariant cannot be combined with draft_models_path"),
    ("draft_models_path: 'd' enable_prefix_caching: true", "enable_prefix_caching cannot be combined with "
                                                           "draft_models_path"),
    ("draft_models_path: 'd' cache_eviction_config: { start_size: 32 recent_size: 32 max_cache_size: 128 }",
     "cache_eviction_config cannot be combined with draft_models_path"),
])
def test_a_draft_the_engine_cannot_serve_fails_the_load_naming_the_node(tmp_path, options, words):
    from ovserve.calculators.llm.engine_options import draft_model

    with pytest.raises(ValueError, match="node 'llm': ") as caught:
        draft_model("llm", tmp_path, engine_options(options))
    assert words in str(caught.value)


def test_draft_scheduler_settings_default_to_the_main_models_as_in_ovms(tmp_path):
    from ovserve.calculators.llm.engine_options import draft_model
    from tests.tiny_models import QWEN3_RERANKER  # an IR folder of a causal LM: the draft need not load here

    options = engine_options(f"draft_models_path: '{QWEN3_RERANKER}' max_num_seqs: 12 cache_size: 2 "
                             f"draft_max_num_batched_tokens: 64 dynamic_split_fuse: false")
    draft = draft_model("llm", tmp_path, options)
    assert (draft.path, draft.device) == (str(QWEN3_RERANKER), "CPU")
    assert (draft.max_num_seqs, draft.cache_size, draft.max_num_batched_tokens, draft.dynamic_split_fuse) == (
        12, 2, 64, False)
    assert draft_model("llm", tmp_path, engine_options("")) is None


@pytest.mark.parametrize(("sizes", "words"), [
    ("start_size: 10 recent_size: 32 max_cache_size: 128", "start_size is 10, not a multiple of the CPU's KV cache "
                                                          "block of 32 tokens: use 0 or 32"),
    ("start_size: 32 recent_size: 32 max_cache_size: 100", "max_cache_size is 100"),
    ("start_size: 0 recent_size: 32 max_cache_size: 128", "start_size must be at least one block"),
    ("start_size: 32 recent_size: 32 max_cache_size: 128 apply_rotation: true", "apply_rotation: true is not "
                                                                              "supported on CPU"),
])
def test_cache_eviction_sizes_the_cpu_engine_would_fail_on_fail_the_load(sizes, words):
    from ovserve.calculators.llm.engine_options import check_cache_eviction

    options = engine_options(f"cache_eviction_config: {{ {sizes} }}")
    with pytest.raises(ValueError, match="node 'llm': cache_eviction_config." + words):
        check_cache_eviction("llm", options.cache_eviction_config, "CPU")


def test_cache_eviction_knows_the_prompt_lengths_the_engine_fails_on():
    assert engine_options("cache_eviction_config: { start_size: 64 recent_size: 32 max_cache_size: 256 }"
                          ).cache_eviction_config.prompt_gap == (65, 71)  # SnapKV's window of 8: 65 to 71 failed
    assert engine_options("cache_eviction_config: { start_size: 32 recent_size: 32 max_cache_size: 256 "
                          "snapkv_window_size: 1 }").cache_eviction_config.prompt_gap is None
