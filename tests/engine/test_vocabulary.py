"""The byte-table detokenizer: built from the model's vocabulary, trusted only once verified."""

import json

import pytest

from ovserve.engine.settings import find_model_files
from ovserve.engine.tokenizer import IncrementalDetokenizer, TextTokenizer
from ovserve.engine.vocabulary import ByteTableDetokenizer, _tokenizer_json_bytes, verified_byte_table, vocabulary_bytes


@pytest.fixture(scope="module")
def model(default_model):
    return find_model_files(default_model)


@pytest.mark.slow
def test_the_default_model_gets_the_fast_detokenizer_and_it_matches_openvino(model):
    tokenizer = TextTokenizer.load(model)
    assert tokenizer.fast_detokenizer
    text = "Héllo wörld, 日本語 🙂!\n\tTabs, \"quotes\" and   spaces. Ünïcödé ✓ done."
    ids = [*tokenizer.encode(text, add_special_tokens=False).tolist(), tokenizer.eos_token_id]
    fast, slow = tokenizer.detokenizer(), IncrementalDetokenizer(tokenizer)
    assert isinstance(fast, ByteTableDetokenizer)
    for step in range(0, len(ids), 3):
        chunk = ids[step:step + 3]
        assert fast.push(chunk) == slow.push(chunk)


@pytest.mark.slow
def test_a_vocabulary_that_does_not_match_the_model_is_refused(model):
    tokenizer = TextTokenizer.load(model)
    vocabulary = vocabulary_bytes(model)
    shifted = vocabulary[1:] + vocabulary[:1]
    assert verified_byte_table(tokenizer._tokenizer, shifted) is None
    assert verified_byte_table(tokenizer._tokenizer, vocabulary) is not None


def test_byte_level_vocabulary_from_tokenizer_json(tmp_path):
    spec = {
        "model": {"type": "BPE", "vocab": {"Hello": 0, "Ġworld": 1, "Ċ": 2, "Ã©": 3}},
        "decoder": {"type": "ByteLevel"},
        "added_tokens": [{"id": 4, "content": "<|end|>", "special": True}],
    }
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    assert _tokenizer_json_bytes(tmp_path / "tokenizer.json") == [b"Hello", b" world", b"\n", "é".encode(), b"<|end|>"]


def test_other_vocabularies_are_not_used(tmp_path):
    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": {"type": "Unigram"}, "decoder": {}}))
    assert _tokenizer_json_bytes(tmp_path / "tokenizer.json") is None
    assert _tokenizer_json_bytes(tmp_path / "missing.json") is None


def test_the_incremental_decoder_holds_an_unfinished_character():
    detokenizer = ByteTableDetokenizer([b"a", "日".encode()[:2], "日".encode()[2:], b"", b"b"])
    assert [detokenizer.push([i]) for i in (0, 1, 2, 3, 4)] == ["a", "", "日", "", "b"]
