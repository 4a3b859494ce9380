"""``python -m benchmarks.step_ab`` run briefly on the tiny committed causal LM: each variant is compiled with its own
plugin properties, and the variants are timed in turns."""

import json

import pytest

from benchmarks import step_ab
from tests.tiny_models import QWEN3_RERANKER


def test_two_variants_are_compiled_as_asked_and_timed_in_turns(tmp_path, capsys):
    out = tmp_path / "ab.json"
    argv = ["--model", str(QWEN3_RERANKER), "--variant", "base:", "--variant", "u8:KV_CACHE_PRECISION=u8",
            "--runs", "2", "--steps", "2", "--context", "8", "--json-out", str(out)]
    assert step_ab.main(argv) == 0

    rows = json.loads(out.read_text())["rows"]
    assert [row["variant"] for row in rows] == ["base", "u8"]
    assert rows[0]["ratio"] == 1.0
    assert rows[1]["settings"] == {"KV_CACHE_PRECISION": "u8"}
    assert rows[1]["compiled"]["key_cache.0"].startswith("u8 ")
    assert not rows[0]["compiled"]["key_cache.0"].startswith("u8 ")
    for row in rows:
        assert len(row["runs_ms"]) == 2 and row["min_ms"] <= row["median_ms"] <= row["max_ms"]
    assert "| u8 | KV_CACHE_PRECISION=u8 |" in capsys.readouterr().out


@pytest.mark.parametrize("variant", ["no-colon", ":KEY=VALUE", "name:KEY"])
def test_a_malformed_variant_is_refused(variant, capsys):
    with pytest.raises(SystemExit) as exit_info:
        step_ab.main(["--model", str(QWEN3_RERANKER), "--variant", variant])
    assert exit_info.value.code == 2
    assert "expected" in capsys.readouterr().err
