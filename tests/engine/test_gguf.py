"""Reading GGUF metadata without loading the model."""

import pytest

from ovserve.engine.gguf import GGUFError, gguf_context_length, read_gguf_metadata


def test_the_default_models_metadata(default_model):
    metadata = read_gguf_metadata(default_model)
    assert metadata["general.architecture"] == "llama"
    assert gguf_context_length(metadata) == 8192
    assert "tokenizer.ggml.tokens" not in metadata, "arrays are skipped"


def test_a_file_that_is_not_gguf(tmp_path):
    (tmp_path / "x.gguf").write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(GGUFError, match="not a GGUF file"):
        read_gguf_metadata(tmp_path / "x.gguf")


def test_a_truncated_file(tmp_path, default_model):
    (tmp_path / "cut.gguf").write_bytes(default_model.read_bytes()[:200])
    with pytest.raises(GGUFError, match="ends inside its metadata"):
        read_gguf_metadata(tmp_path / "cut.gguf")
