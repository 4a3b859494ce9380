"""Reading GGUF metadata without loading the model."""

import struct

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
    with pytest.raises(GGUFError, match="corrupt or truncated: the metadata of 33 items does not fit"):
        read_gguf_metadata(tmp_path / "cut.gguf")
    (tmp_path / "cut.gguf").write_bytes(default_model.read_bytes()[:20])
    with pytest.raises(GGUFError, match="ends inside its metadata"):
        read_gguf_metadata(tmp_path / "cut.gguf")


@pytest.mark.parametrize("length", [2**40, 2**63])
def test_lengths_in_the_file_are_checked_against_its_size(tmp_path, length):
    """A corrupt length makes no huge read or allocation: one key whose string claims ``length`` bytes."""
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", length) + b"key" + bytes(16)
    (tmp_path / "bad.gguf").write_bytes(header)
    with pytest.raises(GGUFError, match=r"a string of \d+ items does not fit in the file"):
        read_gguf_metadata(tmp_path / "bad.gguf")
    array = (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"k" + struct.pack("<IIQ", 9, 4, length))
    (tmp_path / "bad.gguf").write_bytes(array)
    with pytest.raises(GGUFError, match=r"an array of \d+ items does not fit"):
        read_gguf_metadata(tmp_path / "bad.gguf", arrays=("k",))
    with pytest.raises(GGUFError, match=r"an array of \d+ items does not fit"):
        read_gguf_metadata(tmp_path / "bad.gguf")


def test_arrays_nested_without_end_are_refused(tmp_path):
    nested = struct.pack("<IQ", 9, 1) * 2000 + struct.pack("<IQ", 4, 0)  # an array of an array of ... of uint32
    (tmp_path / "deep.gguf").write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"k"
                                         + struct.pack("<I", 9) + nested)
    with pytest.raises(GGUFError, match="nested more than 16 deep"):
        read_gguf_metadata(tmp_path / "deep.gguf")
