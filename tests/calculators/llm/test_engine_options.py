"""The LLM node's options that are checked against the model before its engine starts."""

import logging

import pytest

from ovserve.calculators.llm.engine import check_pipeline_type
from ovserve.engine.settings import find_model_files
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
