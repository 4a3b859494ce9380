"""``python -m benchmarks.step_profile`` run briefly on the tiny committed causal LM (2 layers, SmolLM2's vocabulary),
in both of the ways the engine can run a model: it compiles, steps, counts every node and groups them."""

import json

import pytest

from benchmarks import step_profile
from benchmarks.step_breakdown import PARTS
from tests.tiny_models import QWEN3_RERANKER

LAYERS = json.loads((QWEN3_RERANKER / "config.json").read_text())["num_hidden_layers"]


@pytest.mark.parametrize("mode", ["paged", "stateful"])
def test_a_brief_profile_groups_every_node_of_a_decode_step(mode, tmp_path, capsys):
    out = tmp_path / "profile.json"
    argv = ["--model", str(QWEN3_RERANKER), "--mode", mode, "--context", "8", "--steps", "3", "--json-out", str(out)]
    assert step_profile.main(argv) == 0

    report = json.loads(out.read_text())
    assert report["layers"] == LAYERS
    assert report["mode"] == mode and report["steps"] == 3
    assert isinstance(report["machine"]["cpu_flags"], list)  # recorded beside the figures
    assert report["compiled"]["INFERENCE_NUM_THREADS"].isdigit()
    parts = report["by_part"]
    assert list(parts) == list(PARTS)
    assert parts["attention kernel"]["nodes"] == LAYERS
    assert parts["attention out"]["nodes"] == LAYERS
    assert parts["mlp"]["nodes"] == 3 * LAYERS  # gate, up, down
    assert parts["output projection"]["nodes"] == 1
    assert parts["output projection"]["weight_mb"] > 0  # the logits read the vocabulary's weights
    assert sum(row["nodes"] for row in parts.values()) == report["executed_nodes"]
    assert report["wall_ms"]["min"] > 0 and report["wall_ms"]["min"] <= report["wall_ms"]["p50"]
    assert [row["layer"] for row in report["by_layer"]] == ["before", *map(str, range(LAYERS)), "head"]
    assert report["sampling_us"]["argmax_us"] > 0

    printed = capsys.readouterr().out
    assert "| part | nodes |" in printed and "| node type | kernel |" in printed and "| layer | ms |" in printed


def test_nothing_to_measure_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        step_profile.main(["--model", str(QWEN3_RERANKER), "--steps", "0"])
    assert exit_info.value.code == 2
    assert "--steps must be at least 1" in capsys.readouterr().err
