"""A model's default sampling settings come from its generation_config.json."""

import json

import pytest

from ovserve.engine.generation_config import (
    OPENAI_SAMPLING,
    SamplingDefaults,
    generation_config_of,
    load_sampling_defaults,
)
from ovserve.engine.settings import find_model_files


def test_the_file_next_to_a_gguf_gives_the_sampling_keys_and_nothing_else(default_model, tmp_path):
    (tmp_path / default_model.name).symlink_to(default_model)
    (tmp_path / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": 1, "eos_token_id": 2, "do_sample": True, "temperature": 0.6, "top_p": 0.9, "top_k": 20}))
    path = generation_config_of(find_model_files(tmp_path))
    assert path == tmp_path / "generation_config.json"
    assert load_sampling_defaults(path) == SamplingDefaults(temperature=0.6, top_p=0.9, top_k=20)


def test_an_ir_folder_keeps_it_inside(tmp_path):
    for name in ("openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml"):
        (tmp_path / name).write_text("<net/>")
    assert generation_config_of(find_model_files(tmp_path)) == tmp_path / "generation_config.json"


def test_keys_the_file_leaves_out_keep_openais_defaults(tmp_path):
    path = tmp_path / "generation_config.json"
    path.write_text('{"top_p": 0.5}')
    assert load_sampling_defaults(path) == SamplingDefaults(temperature=1.0, top_p=0.5, top_k=None)


def test_without_a_file_openais_defaults_apply_unless_the_graph_named_one(tmp_path):
    assert load_sampling_defaults(tmp_path / "generation_config.json") is OPENAI_SAMPLING
    with pytest.raises(FileNotFoundError, match=r"generation_config_path .* does not exist"):
        load_sampling_defaults(tmp_path / "generation_config.json", required=True)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"temperature": 0.2,\n "top_p": }', r"generation_config.json:2:11: not valid JSON"),
        ('{"temperature": 7}', r"'temperature' input should be less than or equal to 2 \(got 7\)"),
        ('{"top_k": -1}', r"'top_k' input should be greater than or equal to 0 \(got -1\)"),
    ],
)
def test_a_broken_file_is_named_with_what_is_wrong(tmp_path, text, words):
    path = tmp_path / "generation_config.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=words):
        load_sampling_defaults(path)
