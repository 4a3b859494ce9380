"""Finding model files and the engine's defaults."""

import pytest

from ovserve.engine.settings import CPU_PLUGIN_DEFAULTS, find_model_files, plugin_config_with_defaults


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


def test_cpu_defaults_apply_unless_the_user_says_otherwise():
    assert plugin_config_with_defaults("CPU", {}) == CPU_PLUGIN_DEFAULTS
    assert plugin_config_with_defaults("CPU", {"KV_CACHE_PRECISION": "u8"})["KV_CACHE_PRECISION"] == "u8"
    assert plugin_config_with_defaults("GPU", {}) == {}
