"""Devices beyond CPU: what each pipeline runs on, NPU's static-shape settings, and a device that is not there.

This machine has a CPU only: AUTO and HETERO resolve to it, so the loads here prove that the names reach OpenVINO
and answer, not how a GPU or an NPU would serve (docs/devices.md)."""

import numpy as np
import pytest

from ovserve.engine.call_client import CallEngine
from ovserve.engine.client import EngineClient
from ovserve.engine.devices import (
    check_batching_device,
    check_static_shape_settings,
    device_base,
    is_npu,
    max_prompt_tokens,
    vision_properties,
)
from ovserve.engine.process import EngineError
from ovserve.engine.protocol import SamplingParams
from ovserve.engine.rerank_kind import RerankJob, RerankSpec
from ovserve.engine.settings import EngineSettings, find_model_files
from tests.tiny_models import RERANKER

PROMPT = np.array([1, 9690, 198, 2683, 359, 253, 5356, 2, 198, 1, 4093, 198, 504, 2, 198, 1, 520, 9531, 198])


@pytest.mark.parametrize(("device", "base"), [("CPU", "CPU"), ("GPU.1", "GPU"), ("AUTO:GPU,CPU", "AUTO"),
                                              ("hetero:NPU,CPU", "HETERO"), ("NPU", "NPU")])
def test_a_device_s_kind_is_its_name_without_index_or_list(device, base):
    assert device_base(device) == base
    assert is_npu(device) == (base == "NPU")


@pytest.mark.parametrize("device", ["CPU", "GPU", "GPU.0", "AUTO", "AUTO:GPU,CPU", "HETERO:GPU,CPU"])
def test_the_batching_pipeline_takes_one_device_or_one_chosen_or_split(device):
    check_batching_device(device)


def test_multi_and_npu_are_refused_for_the_batching_pipeline_saying_what_to_use():
    with pytest.raises(ValueError, match=r"device 'MULTI:GPU,CPU': .*one execution device.*use AUTO"):
        check_batching_device("MULTI:GPU,CPU")
    with pytest.raises(ValueError, match=r"device 'NPU': NPU runs language models on the stateful pipeline only"):
        check_batching_device("NPU")


def test_npu_static_shape_settings_are_refused_on_other_devices_by_name():
    with pytest.raises(ValueError, match=r"plugin_config sets MAX_PROMPT_LEN and MIN_RESPONSE_LEN, NPU's static-shape "
                                         r"settings, for device 'CPU'.*remove them, or serve on NPU"):
        check_static_shape_settings("CPU", {"MAX_PROMPT_LEN": 2048, "MIN_RESPONSE_LEN": 256})
    with pytest.raises(ValueError, match=r"MIN_RESPONSE_LEN, NPU's static-shape settings, for device 'AUTO'"):
        check_static_shape_settings("AUTO", {"MIN_RESPONSE_LEN": "256"})
    check_static_shape_settings("NPU", {"MAX_PROMPT_LEN": "2048", "MIN_RESPONSE_LEN": 256})
    check_static_shape_settings("CPU", {"KV_CACHE_PRECISION": "u8"})
    with pytest.raises(ValueError, match=r"MAX_PROMPT_LEN must be a whole number of tokens above 0 \(got 'long'\)"):
        check_static_shape_settings("NPU", {"MAX_PROMPT_LEN": "long"})


def test_the_longest_prompt_is_npu_s_max_prompt_len_and_unbounded_elsewhere():
    assert max_prompt_tokens("NPU", {}) == 1024
    assert max_prompt_tokens("NPU.0", {"MAX_PROMPT_LEN": "4000"}) == 4000
    assert max_prompt_tokens("CPU", {}) is None


def test_a_vlm_on_npu_takes_its_static_shape_settings_as_its_device_s_properties():
    config = {"MAX_PROMPT_LEN": 2048, "MIN_RESPONSE_LEN": 512, "CACHE_DIR": "c"}
    assert vision_properties("NPU", config) == {"CACHE_DIR": "c", "DEVICE_PROPERTIES": {
        "NPU": {"MAX_PROMPT_LEN": 2048, "MIN_RESPONSE_LEN": 512}}}
    assert vision_properties("CPU", {"CACHE_DIR": "c"}) == {"CACHE_DIR": "c"}


@pytest.mark.slow
@pytest.mark.parametrize("device", ["AUTO", "HETERO:CPU"])
async def test_auto_and_hetero_load_and_answer_on_the_batching_engine(default_model, device):
    """Plumbing only: on this machine both resolve to CPU."""
    client = EngineClient(EngineSettings(find_model_files(default_model), device=device), in_process=True)
    info = await client.start()
    try:
        assert info.device == device
        request = client.submit(PROMPT, SamplingParams(max_new_tokens=4, temperature=0, ignore_eos=True))
        tokens = [token async for delta in request for token in delta.token_ids]
        assert len(tokens) == 4 and request.finish == "length"
    finally:
        await client.stop()


@pytest.mark.parametrize("device", ["GPU", "GPU.0", "HETERO:GPU,CPU"])
async def test_a_gpu_that_is_not_there_fails_the_llm_load_naming_what_there_is(default_model, device):
    client = EngineClient(EngineSettings(find_model_files(default_model), device=device), in_process=True)
    with pytest.raises(EngineError, match=rf"device '{device}' is not available: GPU(\.0)? not found; this machine "
                                          rf"has CPU"):
        await client.start()


async def test_a_reranker_loads_and_scores_on_auto_and_hetero():
    """Plumbing only: on this machine both resolve to CPU."""
    for device in ("AUTO", "HETERO:CPU"):
        engine = CallEngine(RerankSpec(str(RERANKER), device=device), in_process=True)
        info = await engine.start()
        try:
            ranked = await engine.call(RerankJob("capital of france?", ("Paris is the capital.", "Cats sleep."),
                                                 (12, 10)))
            assert info.device == device and sorted(index for index, _ in ranked) == [0, 1]
        finally:
            await engine.stop()


async def test_a_gpu_that_is_not_there_fails_a_reranker_s_load_too():
    engine = CallEngine(RerankSpec(str(RERANKER), device="GPU"), in_process=True)
    with pytest.raises(EngineError, match="device 'GPU' is not available: GPU not found; this machine has CPU"):
        await engine.start()
