"""The real tokenizer: incremental decoding is UTF-8 safe and matches a full decode."""

import pytest

from ovserve.engine.settings import find_model_files
from ovserve.engine.tokenizer import TextTokenizer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tokenizer(default_model):
    return TextTokenizer.load(find_model_files(default_model))


def test_incremental_decoding_one_token_at_a_time_never_breaks_a_character(tokenizer):
    text = "Héllo wörld, 日本語 and emoji 🙂 done."
    ids = tokenizer.encode(text, add_special_tokens=False).tolist()
    detokenizer = tokenizer.detokenizer()
    pieces = [detokenizer.push([token]) for token in ids]
    assert "".join(pieces) == text == tokenizer.decode(ids)
    assert all("\ufffd" not in piece for piece in pieces)
    assert "" in pieces, "some tokens carry only part of a character and show nothing yet"


def test_special_tokens_are_not_shown(tokenizer):
    detokenizer = tokenizer.detokenizer()
    hello = tokenizer.encode("Hello", add_special_tokens=False).tolist()
    assert detokenizer.push(hello) + detokenizer.push([tokenizer.eos_token_id]) == "Hello"


def test_counting_tokens_in_pieces_matches_encoding_in_one_go(tokenizer):
    text = "The quick brown fox jumps over the lazy dog. " * 400  # several pieces, under the maximum
    assert tokenizer.count_tokens(text, add_special_tokens=False) == tokenizer.encode(text, False).size


def test_counting_tokens_goes_past_the_encoders_maximum(tokenizer):
    text = "hello " * 9000  # "hello", then 8999 " hello", then " "
    assert tokenizer.encode(text, add_special_tokens=False).size == 8192, "OpenVINO truncates here"
    assert tokenizer.count_tokens(text, add_special_tokens=False) == 9001


def test_encoding_whole_goes_past_the_maximum_and_decodes_back(tokenizer):
    text = " ".join(f"tok{i}" for i in range(5000))
    ids = tokenizer.encode_whole(text, add_special_tokens=False)
    assert ids.size > 8192
    assert tokenizer.decode(ids.tolist()) == text


def test_encoding_whole_splits_again_where_characters_take_several_tokens(tokenizer):
    text = "🙂" * 9000  # no space to split at, two tokens a character: a 4,000-character piece is under the cap
    ids = tokenizer.encode_whole(text, add_special_tokens=False)
    assert ids.size > tokenizer.truncation_length
    assert tokenizer.decode(ids.tolist()) == text
