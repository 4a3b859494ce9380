"""config.json and command-line errors are caught before anything loads, and say where."""

import json
import subprocess
import sys

import pytest

from ovserve.cli import build_parser
from ovserve.framework.errors import GraphConfigError
from ovserve.server.ovms_config import load_ovms_config
from ovserve.server.serve_models import engine_overrides, servable_specs


def write_config(tmp_path, config, graph=True):
    (tmp_path / "m").mkdir(exist_ok=True)
    if graph:
        (tmp_path / "m" / "graph.pbtxt").write_text('input_stream: "HTTP_REQUEST_PAYLOAD:in"\n')
    path = tmp_path / "config.json"
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    return path


def test_a_config_names_graphs_relative_to_itself(tmp_path):
    path = write_config(tmp_path, {"mediapipe_config_list": [{"name": "org/model", "base_path": "m"}],
                                   "calculator_paths": ["calcs"]})
    (servable,), folders = load_ovms_config(path)
    assert servable.name == "org/model" and servable.graph_path == tmp_path / "m" / "graph.pbtxt"
    assert folders == [tmp_path / "calcs"]


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ('{"mediapipe_config_list": [', "config.json:1:28: not valid JSON"),
        ({"model_config_list": [{"config": {"name": "x"}}], "mediapipe_config_list": []}, "model_config_list is not supported"),
        ({"mediapipe_config_list": [{"name": "a", "base_path": "elsewhere"}]}, "no graph file at"),
        ({"mediapipe_config_list": [{"name": "a", "base_path": "m"}, {"name": "a", "base_path": "m"}]}, "repeated: a"),
        ({"mediapipe_config_list": [{"name": "a", "base_pth": "m"}]}, "base_pth: Extra inputs are not permitted"),
        ({"mediapipe_config_list": []}, "names no graph"),
    ],
)
def test_config_errors_say_what_and_where(tmp_path, config, words):
    with pytest.raises(GraphConfigError, match=words):
        load_ovms_config(write_config(tmp_path, config))


def parse(*argv):
    return build_parser().parse_args(["serve", *argv])


def test_ovms_flag_names_are_aliases():
    args = parse("--rest_port", "9001", "--model_path", "m.gguf", "--model_name", "x", "--target_device", "CPU",
                 "--rest_bind_address", "0.0.0.0", "--cache_size", "2", "--enable_prefix_caching", "true")
    assert (args.port, args.model, args.model_name, args.device, args.host, args.cache_size) == (
        9001, "m.gguf", "x", "CPU", "0.0.0.0", 2)
    assert args.enable_prefix_caching is True
    assert parse("--config_path", "c.json").config == "c.json"


def test_engine_flags_become_option_overrides_of_the_engine_node(tmp_path):
    args = parse("--model", str(tmp_path / "m.gguf"), "--plugin-config", '{"NUM_STREAMS": "1"}', "--max-num-seqs", "8")
    (spec,), _ = servable_specs(args)
    assert spec.name == "m" and spec.graph_path.name == "llm.pbtxt"
    assert spec.overrides == {"engine": {"models_path": str(tmp_path / "m.gguf"), "plugin_config": '{"NUM_STREAMS": "1"}',
                                         "max_num_seqs": 8, "enable_prefix_caching": True}}


def test_prefix_caching_is_on_from_the_command_line_unless_turned_off():
    (spec,), _ = servable_specs(parse("--model", "m.gguf"))
    assert spec.overrides["engine"]["enable_prefix_caching"] is True
    (spec,), _ = servable_specs(parse("--model", "m.gguf", "--enable-prefix-caching", "false"))
    assert spec.overrides["engine"]["enable_prefix_caching"] is False


def test_batch_invariant_flag_sets_the_engine_option():
    (spec,), _ = servable_specs(parse("--model", "m.gguf", "--batch-invariant"))
    assert spec.overrides["engine"]["batch_invariant"] is True
    (spec,), _ = servable_specs(parse("--model", "m.gguf"))
    assert "batch_invariant" not in spec.overrides["engine"]


def test_engine_flags_with_a_config_are_refused_not_ignored():
    with pytest.raises(ValueError, match=r"--max-num-seqs, --batch-invariant set the engine of --model"):
        servable_specs(parse("--config", "c.json", "--max-num-seqs", "4", "--batch-invariant"))


def test_bad_plugin_config_json_is_refused():
    with pytest.raises(ValueError):
        engine_overrides(parse("--plugin-config", "{nope"), __import__("pathlib").Path("m.gguf"))


def test_serving_a_missing_model_fails_at_start_with_a_clear_message(tmp_path):
    result = subprocess.run([sys.executable, "-m", "ovserve.cli", "serve", "--model", str(tmp_path / "none.gguf")],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert "none.gguf' does not exist" in result.stderr
    assert "resource node 'engine' (LLMEngine) failed to open" in result.stderr


def test_batch_invariant_mode_on_a_gpu_refuses_to_start_and_says_why(default_model):
    result = subprocess.run([sys.executable, "-m", "ovserve.cli", "serve", "--model", str(default_model),
                             "--batch-invariant", "--device", "GPU"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert "batch-invariant mode runs on device CPU only; on 'GPU'" in result.stderr


def test_draft_flags_set_the_engine_nodes_draft_options(tmp_path, monkeypatch):
    (tmp_path / "draft.gguf").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    overrides = engine_overrides(parse("--draft-model", "draft.gguf", "--draft-device", "CPU",
                                       "--enable-tool-guided-generation"), tmp_path / "m.gguf")
    assert overrides["draft_models_path"] == str(tmp_path / "draft.gguf")  # a path from here, made absolute
    assert (overrides["draft_device"], overrides["enable_tool_guided_generation"]) == ("CPU", True)
    assert overrides["enable_prefix_caching"] is False  # on by default on the command line, but not with a draft
    assert engine_overrides(parse("--draft-model", "draft.gguf", "--enable-prefix-caching", "true"),
                            tmp_path / "m.gguf")["enable_prefix_caching"] is True  # asked for: the load refuses it
    assert engine_overrides(parse("--draft_models_path", "smollm2"), tmp_path / "m.gguf")[
        "draft_models_path"] == "smollm2"  # not a path here: a model in the store
