"""Detokenize: text deltas never split a character and never show any part of a stop string."""

import numpy as np

from ovserve.calculators.llm.detokenize import DetokenizerCalculator, StopStringFilter
from ovserve.calculators.llm.tool_parsers import special_markers
from ovserve.calculators.llm.types import GenerationDelta, ModelParsers
from ovserve.engine.tokenizer import TextTokenizer
from ovserve.testing import run_calculator
from tests.calculators.llm.fakes import FakeOVTokenizer, chat_request, fake_tokenizer, planned


def test_stop_filter_holds_back_a_possible_stop_and_cuts_a_real_one():
    stops = StopStringFilter(("STOP",))
    assert stops.push("hello ST") == ("hello ", False)
    assert stops.push("O") == ("", False)
    assert stops.push("P and more") == ("", True)


def test_stop_filter_releases_what_turned_out_not_to_be_a_stop():
    stops = StopStringFilter(("STOP", "\n\n"))
    assert stops.push("a S") == ("a ", False)
    assert stops.push("Tx\n") == ("STx", False)
    assert stops.flush() == "\n"


def test_stop_filter_picks_the_earliest_of_several_stops():
    assert StopStringFilter(("b", "a")).push("xxabc") == ("xx", True)


def deltas(*chunks, finish="stop"):
    out, count = [], 0
    for i, chunk in enumerate(chunks):
        count += len(chunk)
        out.append(GenerationDelta(tuple(chunk), finish if i == len(chunks) - 1 else None, 4, count))
    return out


async def detokenize(request, token_deltas):
    inputs = {"DELTAS": token_deltas, "PROMPT": [planned(request)]}
    return (await run_calculator(DetokenizerCalculator, inputs, side_packets={"TOKENIZER": fake_tokenizer()}))["TEXT"]


async def test_a_character_split_across_tokens_is_sent_whole():
    japan = "日本".encode()  # six bytes, one per token in the fake tokenizer
    text = await detokenize(chat_request(), deltas([*b"ab", japan[0]], japan[1:4], japan[4:], finish="length"))
    assert [t.text for t in text] == ["ab", "日", "本"]
    assert text[-1].finish_reason == "length" and text[-1].completion_tokens == 8


async def test_a_stop_string_ends_the_text_before_it_even_across_deltas():
    text = await detokenize(chat_request(stop=["END"]), deltas(b"one E", b"N", b"D two", b" three"))
    assert "".join(t.text for t in text) == "one "
    assert text[-1].finish_reason == "stop"
    assert sum(1 for t in text if t.finish_reason) == 1


async def test_held_back_text_is_released_at_the_end():
    text = await detokenize(chat_request(stop=["END"]), deltas(b"one E", b"N", finish="length"))
    assert "".join(t.text for t in text) == "one EN" and text[-1].finish_reason == "length"


def test_stop_filter_can_keep_the_stop_string():
    stops = StopStringFilter(("ab", "abc", "x"), include_stop=True)
    assert stops.push("12 a") == ("12 ", False)
    assert stops.push("bcd x") == ("12 abc"[3:], True)


async def test_include_stop_str_in_output_ends_the_text_with_the_stop():
    text = await detokenize(chat_request(stop=["END"], include_stop_str_in_output=True),
                            deltas(b"one E", b"N", b"D two"))
    assert "".join(t.text for t in text) == "one END" and text[-1].finish_reason == "stop"


async def test_echo_puts_the_prompt_in_front_of_the_text():
    from tests.calculators.llm.fakes import completion_request

    text = await detokenize(completion_request(prompt="Q:", echo=True), deltas(b" A", finish="length"))
    assert "".join(t.text for t in text) == "Q: A"
    text = await detokenize(completion_request(prompt=[72, 105], echo=True), deltas(b"!", finish="length"))
    assert "".join(t.text for t in text) == "Hi!"


class MistralLikeTokenizer(FakeOVTokenizer):
    """Byte-level, with id 1 the special token ``[TOOL_CALLS]``, which decoding drops."""

    def encode(self, text, add_special_tokens=True):
        if text == "[TOOL_CALLS]":
            class Encoded:
                class input_ids:
                    data = np.array([[1]], dtype=np.int64)

            return Encoded
        return super().encode(text, add_special_tokens)

    def decode(self, ids, skip_special_tokens=True):
        return super().decode([i for i in ids if i != 1 or not skip_special_tokens], skip_special_tokens)


async def test_a_special_token_the_tool_parser_needs_is_written_out_where_it_is():
    tokenizer = TextTokenizer(MistralLikeTokenizer())
    markers = special_markers(tokenizer, ["[TOOL_CALLS]", "{"])
    assert markers == ((1, "[TOOL_CALLS]"),)  # "{" is ordinary text, which decoding keeps
    inputs = {"DELTAS": deltas(b"ok ", (1, *b"[{"), b'"name"}]'), "PROMPT": [planned(chat_request())]}
    side = {"TOKENIZER": tokenizer, "PARSERS": ModelParsers("mistral", marker_tokens=markers)}
    texts = (await run_calculator(DetokenizerCalculator, inputs, side_packets=side))["TEXT"]
    assert "".join(t.text for t in texts) == 'ok [TOOL_CALLS][{"name"}]'
    inputs = {"DELTAS": deltas(b"ok ", (1, *b"[{")), "PROMPT": [planned(chat_request())]}
    plain = (await run_calculator(DetokenizerCalculator, inputs, side_packets={"TOKENIZER": tokenizer}))["TEXT"]
    assert "".join(t.text for t in plain) == "ok [{"  # without the parsers' markers it is dropped
