"""Finding model files and the engine's defaults."""

import pytest

from ovserve.engine.cpu import CPUInfo, CPUKind
from ovserve.engine.settings import BatchInvarianceError, find_model_files, plugin_config_for


def test_a_gguf_file_or_a_folder_holding_one(default_model, tmp_path):
    files = find_model_files(default_model)
    assert (files.kind, files.path, files.context_length) == ("gguf", default_model, 8192)
    (tmp_path / default_model.name).symlink_to(default_model)
    assert find_model_files(tmp_path).path == tmp_path / default_model.name


def test_an_openvino_ir_folder(tmp_path):
    for name in ("openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml"):
        (tmp_path / name).write_text("<net/>")
    (tmp_path / "config.json").write_text('{"max_position_embeddings": 2048}')
    files = find_model_files(tmp_path)
    assert (files.kind, files.context_length) == ("openvino_ir", 2048)


@pytest.mark.parametrize(
    ("layout", "words"),
    [
        ({}, "holds neither openvino_model.xml nor exactly one .gguf"),
        ({"openvino_model.xml": "x"}, "has no openvino_tokenizer.xml or openvino_detokenizer.xml"),
        ({"a.gguf": "x", "b.gguf": "y"}, "exactly one .gguf"),
        ({"weights.bin": "x"}, "found: weights.bin"),
    ],
)
def test_folders_that_are_not_models_say_what_they_hold(tmp_path, layout, words):
    for name, text in layout.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=words):
        find_model_files(tmp_path)


def test_a_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_model_files(tmp_path / "nothing.gguf")


AVX2 = CPUInfo(CPUKind.AVX2, ("avx2",))
AVX512_BF16 = CPUInfo(CPUKind.AVX512_BF16, ("avx2", "avx512f", "avx512_bf16"))
ARM = CPUInfo(CPUKind.OTHER, ())


def test_cpu_defaults_follow_the_cpu_kind_unless_the_user_says_otherwise():
    assert plugin_config_for("CPU", {}, cpu=AVX2) == {
        "INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f16", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "32"}
    assert plugin_config_for("CPU", {}, cpu=AVX512_BF16)["INFERENCE_PRECISION_HINT"] == "bf16"
    assert plugin_config_for("CPU", {"KV_CACHE_PRECISION": "u8"}, cpu=AVX2)["KV_CACHE_PRECISION"] == "u8"
    assert plugin_config_for("CPU", {}, cpu=ARM) == {"KV_CACHE_PRECISION": "f16"}
    assert plugin_config_for("GPU", {"CACHE_DIR": "/tmp/x"}) == {"CACHE_DIR": "/tmp/x"}


@pytest.mark.parametrize("cpu", [AVX2, AVX512_BF16, CPUInfo(CPUKind.AMX, ("amx_tile", "amx_bf16"))])
def test_batch_invariant_mode_computes_everything_in_f32(cpu):
    config = plugin_config_for("CPU", {"NUM_STREAMS": "1"}, batch_invariant=True, cpu=cpu)
    assert config == {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32",
                      "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0", "NUM_STREAMS": "1"}


def test_batch_invariant_mode_accepts_a_plugin_config_that_repeats_its_settings():
    config = plugin_config_for("CPU", {"KV_CACHE_PRECISION": "F32", "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0},
                               batch_invariant=True, cpu=AVX512_BF16)
    assert config["KV_CACHE_PRECISION"] == "f32" and config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] == "0"


def test_batch_invariant_mode_refuses_a_plugin_config_that_undoes_it():
    with pytest.raises(BatchInvarianceError, match=r"plugin_config sets KV_CACHE_PRECISION=u8, .* needs "
                                                   r"INFERENCE_PRECISION_HINT=f32, KV_CACHE_PRECISION=f32"):
        plugin_config_for("CPU", {"KV_CACHE_PRECISION": "u8"}, batch_invariant=True, cpu=AVX2)


@pytest.mark.parametrize("device", ["GPU", "NPU", "AUTO", "HETERO:GPU,CPU"])
def test_batch_invariant_mode_refuses_devices_other_than_cpu(device):
    with pytest.raises(BatchInvarianceError, match=rf"device CPU only; on '{device}'"):
        plugin_config_for(device, {}, batch_invariant=True)


def test_batch_invariant_mode_refuses_a_cpu_it_has_no_settings_for():
    with pytest.raises(BatchInvarianceError, match="needs an x86 CPU with AVX2, AVX-512 or AMX; this one is other"):
        plugin_config_for("CPU", {}, batch_invariant=True, cpu=ARM)


def test_batch_invariant_mode_refuses_prompt_lookup():
    with pytest.raises(BatchInvarianceError, match="cannot be combined with prompt_lookup"):
        plugin_config_for("CPU", {"prompt_lookup": True}, batch_invariant=True, cpu=AVX2)
    assert plugin_config_for("CPU", {"prompt_lookup": True}, cpu=AVX2)["prompt_lookup"] is True
