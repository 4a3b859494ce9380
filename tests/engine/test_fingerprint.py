"""system_fingerprint: the same for the same model and answer-changing settings, different when one differs."""

from dataclasses import replace
from pathlib import Path

import pytest

from ovserve.engine.cpu import CPUInfo, CPUKind
from ovserve.engine.fingerprint import SAMPLE_BYTES, SAMPLES, file_identity, model_identity, system_fingerprint
from ovserve.engine.generation_config import SamplingDefaults
from ovserve.engine.settings import EngineSettings, ModelFiles, plugin_config_for

AVX2 = CPUInfo(CPUKind.AVX2, ("avx2",))
BF16 = CPUInfo(CPUKind.AVX512_BF16, ("avx2", "avx512f", "avx512_bf16"))


def engine_settings(cpu: CPUInfo = AVX2, plugin_config: dict | None = None, **fields) -> EngineSettings:
    model = ModelFiles("gguf", Path("/models/m.gguf"), 8192, "m")
    return EngineSettings(model, plugin_config=plugin_config_for("CPU", plugin_config or {}, cpu=cpu), **fields)


def fingerprint(model_digest: str = "model-a", cpu: CPUInfo = AVX2, plugin_config: dict | None = None,
                answers: dict | None = None, **fields) -> str:
    return system_fingerprint(model_digest, engine_settings(cpu, plugin_config, **fields), cpu, answers)


def test_it_is_fp_and_ten_hex_digits_and_the_same_each_time():
    first = fingerprint()
    assert first.startswith("fp_") and len(first) == 13 and int(first[3:], 16) >= 0
    assert fingerprint() == first


@pytest.mark.parametrize("changed", [
    {"model_digest": "model-b"},
    {"cpu": BF16},  # another CPU kind, and with it bf16 inference
    {"plugin_config": {"INFERENCE_PRECISION_HINT": "bf16"}},
    {"plugin_config": {"KV_CACHE_PRECISION": "u8"}},
    {"plugin_config": {"DYNAMIC_QUANTIZATION_GROUP_SIZE": "0"}},
    {"plugin_config": {"prompt_lookup": True}},
    {"enable_prefix_caching": True},
    {"max_num_batched_tokens": 512},
    {"batch_invariant": True},
    {"answers": {"sampling": SamplingDefaults(temperature=0.2)}},
    {"answers": {"tool_parser": "hermes3"}},
])
def test_a_setting_that_changes_answers_changes_it(changed):
    assert fingerprint(**changed) != fingerprint()


@pytest.mark.parametrize("irrelevant", [{"cache_size": 4}, {"max_num_seqs": 8}])
def test_a_setting_that_only_bounds_the_work_leaves_it(irrelevant):
    assert fingerprint(**irrelevant) == fingerprint()


def test_the_cpu_kind_counts_on_cpu_only():
    gpu = replace(engine_settings(), device="GPU", plugin_config={})
    assert system_fingerprint("m", gpu, AVX2) == system_fingerprint("m", gpu, BF16)


def test_a_model_file_is_known_by_its_contents_wherever_it_is(tmp_path):
    small = tmp_path / "a.gguf"
    small.write_bytes(b"GGUF" + bytes(1000))
    copy = tmp_path / "elsewhere" / "a.gguf"
    copy.parent.mkdir()
    copy.write_bytes(small.read_bytes())
    assert file_identity(small) == file_identity(copy)
    copy.write_bytes(b"GGUF" + bytes(999) + b"\x01")
    assert file_identity(small) != file_identity(copy)


def test_a_large_model_file_is_sampled_not_read_whole_and_a_sampled_change_shows(tmp_path):
    big = tmp_path / "big.gguf"
    size = (SAMPLES + 2) * SAMPLE_BYTES
    big.write_bytes(bytes(size))
    before = file_identity(big)
    with big.open("r+b") as file:
        file.seek(size - 1)  # the last block is always sampled
        file.write(b"\x01")
    assert file_identity(big) != before


def test_an_ir_folder_is_known_by_its_model_and_tokenizer_files(tmp_path):
    for name in ("openvino_model.xml", "openvino_model.bin", "openvino_tokenizer.xml", "openvino_detokenizer.xml"):
        (tmp_path / name).write_text(name)
    model = ModelFiles("openvino_ir", tmp_path, None, "ir")
    before = model_identity(model)
    (tmp_path / "notes.txt").write_text("not loaded")
    assert model_identity(model) == before
    (tmp_path / "openvino_tokenizer.xml").write_text("another vocabulary")
    assert model_identity(model) != before
