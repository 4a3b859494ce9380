"""Model families' tool-call formats, on answers as such models write them, whole and streamed in pieces."""

import json

import pytest

from ovserve.calculators.llm.tool_calls import ToolCallParserCalculator
from ovserve.calculators.llm.tool_parsers import PARSERS, choose, detect
from ovserve.calculators.llm.types import ModelParsers, TextDelta
from ovserve.testing import run_calculator
from tests.calculators.llm.fakes import chat_request, planned

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
PARIS = ("get_weather", {"city": "Paris"})
ROME = ("get_time", {"city": "Rome"})

RECORDED = [
    ("hermes3", 'I will check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
     "I will check.", [PARIS]),
    ("hermes3", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>\n'
                '{"name": "get_time", "arguments": {"city": "Rome"}}\n</tool_call>', "", [PARIS, ROME]),
    ("llama3", '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}', "", [PARIS]),
    ("llama3", '{"name": "get_weather", "parameters": {"city": "Paris"}}; '
               '{"name": "get_time", "parameters": {"city": "Rome"}}', "", [PARIS, ROME]),
    ("mistral", '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}}]', "", [PARIS]),
    ("mistral", '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_time[ARGS]{"city": "Rome"}', "",
     [PARIS, ROME]),
    ("pythonic", '[get_weather(city="Paris"), get_time(city="Rome")]', "", [PARIS, ROME]),
    ("phi4", 'functools[{"name": "get_weather", "arguments": {"city": "Paris"}}]', "", [PARIS]),
    ("generic", json.dumps({"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}), "", [PARIS]),
]


def calls_of(calls):
    return [(c.name, json.loads(c.arguments)) for c in calls]


@pytest.mark.parametrize(("parser", "text", "content", "calls"), RECORDED)
def test_whole_answers_parse_into_their_calls(parser, text, content, calls):
    parsed_content, parsed_calls = PARSERS[parser].parse(text)
    assert (parsed_content or "") == content and calls_of(parsed_calls) == calls
    assert all(c.id.startswith("call_") for c in parsed_calls)


@pytest.mark.parametrize("parser", sorted(set(PARSERS) - {"generic"}))
def test_an_answer_without_calls_is_content(parser):
    assert PARSERS[parser].parse("The weather in Paris is sunny.") == ("The weather in Paris is sunny.", ())


async def stream(parser, text, size=3):
    pieces = [text[i:i + size] for i in range(0, len(text), size)]
    texts = [TextDelta(piece, "stop" if i == len(pieces) - 1 else None, 5, i + 1) for i, piece in enumerate(pieces)]
    out = await run_calculator(ToolCallParserCalculator,
                               {"PROMPT": [planned(chat_request(tools=[WEATHER]), ModelParsers(parser))],
                                "TEXT": texts})
    return out["PARSED"]


@pytest.mark.parametrize(("parser", "text", "content", "calls"), RECORDED)
async def test_streamed_in_pieces_content_goes_out_before_the_calls(parser, text, content, calls):
    parsed = await stream(parser, text)
    assert "".join(d.text for d in parsed).strip() == content
    assert calls_of(parsed[-1].tool_calls) == calls and parsed[-1].finish_reason == "tool_calls"
    assert all(not d.tool_calls for d in parsed[:-1])


@pytest.mark.parametrize(("parser", "text", "content", "calls"), RECORDED)
@pytest.mark.parametrize("size", [1, 4])
async def test_each_call_streams_in_pieces_that_join_to_its_arguments(parser, text, content, calls, size):
    parsed = await stream(parser, text, size)
    final = parsed[-1].tool_calls
    for index, call in enumerate(final):
        pieces = [(d, p) for d in parsed for p in d.tool_call_pieces if p.index == index]
        assert (pieces[0][1].id, pieces[0][1].name) == (call.id, call.name)  # the first piece names the call
        assert all(p.id is None and p.name is None for _, p in pieces[1:])
        assert "".join(p.arguments for _, p in pieces) == call.arguments
    first_piece_at = next(i for i, d in enumerate(parsed) if d.tool_call_pieces)
    assert parsed[first_piece_at].finish_reason is None  # the first call began before the answer ended
    assert calls_of(final) == calls


async def test_content_streams_as_it_comes_when_no_call_starts():
    parsed = await stream("hermes3", "Sunny and warm, with a light breeze from the west.")
    assert len(parsed) > 3 and "".join(d.text for d in parsed) == "Sunny and warm, with a light breeze from the west."
    assert parsed[-1].finish_reason == "stop"


@pytest.mark.parametrize(
    ("template", "parser"),
    [
        ("{% for m in messages %}{{ m.content }}{% endfor %}", None),
        ("{% if tools %}<tools>{{ tools }}</tools> ... <tool_call>{% endif %}", "hermes3"),
        ("{% if tools %}[AVAILABLE_TOOLS]{{ tools }}[/AVAILABLE_TOOLS]{% endif %}[TOOL_CALLS]", "mistral"),
        ("{% if tools %}{{ tools }}{% endif %}<|python_tag|>", "llama3"),
        ("{% if tools %}{{ tools }}{% endif %}<|python_start|>", "pythonic"),
        ("{% if tools %}{{ tools }}{% endif %} no marker here", None),
    ],
)
def test_the_format_is_detected_from_the_chat_template(template, parser):
    assert detect(template) == parser


def test_the_graph_option_wins_over_the_template():
    assert choose(None, "{{ messages }}") == ModelParsers("generic")
    assert choose(None, "{{ tools }} <tool_call>") == ModelParsers("hermes3")
    assert choose("llama3", "{{ tools }} <tool_call>") == ModelParsers("llama3")
    assert choose("devstral", "") == ModelParsers("mistral")
    assert choose("none", "{{ messages }}") == ModelParsers(None)
    assert choose("gptoss", "") == ModelParsers(None, unsupported="gptoss")


async def test_parallel_tool_calls_false_keeps_the_first_call():
    two = RECORDED[1][1]  # hermes3, two calls
    texts = [TextDelta(two, "stop", 5, 30)]
    out = await run_calculator(ToolCallParserCalculator,
                               {"PROMPT": [planned(chat_request(tools=[WEATHER], parallel_tool_calls=False),
                                                   ModelParsers("hermes3"))], "TEXT": texts})
    assert calls_of(out["PARSED"][-1].tool_calls) == [PARIS]


def test_a_hermes_call_cut_off_by_max_tokens_after_complete_ones_is_dropped():
    call = '<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>\n'
    content, calls = PARSERS["hermes3"].parse(call * 2 + '<tool_call>\n{"name": "f", "argu')
    assert content is None and [(c.name, c.arguments) for c in calls] == [("f", '{"a": 1}')] * 2
    alone = '<tool_call>\n{"name": "f", "argu'
    assert PARSERS["hermes3"].parse(alone) == (alone, ())  # nothing complete: it stays text


def test_a_complete_last_hermes_call_without_its_closing_tag_is_kept():
    call = '<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>\n'
    _, calls = PARSERS["hermes3"].parse(call + '<tool_call>\n{"name": "g", "arguments": {}}')
    assert [c.name for c in calls] == ["f", "g"]


def test_llama3_calls_before_one_cut_off_are_kept():
    _, calls = PARSERS["llama3"].parse('{"name": "a", "parameters": {"x": 1}}; {"name": "b", "param')
    assert [(c.name, c.arguments) for c in calls] == [("a", '{"x": 1}')]
    assert PARSERS["llama3"].parse('{"name": "b", "param') == ('{"name": "b", "param', ())


@pytest.mark.parametrize(("parser", "text"), [
    ("pythonic", "[get_weather(city={[1]: 2})]"),  # TypeError in the parser
    ("hermes3", "<tool_call>" + "[" * 100_000 + "]" * 100_000 + "</tool_call>"),  # RecursionError
    ("llama3", '{"name": "get_weather", "parameters": ' + "[" * 100_000 + "]" * 100_000 + "}"),
])
async def test_an_answer_a_parser_fails_on_goes_back_as_content_and_the_request_succeeds(parser, text, caplog):
    parsed = await stream(parser, text, size=5000)
    assert not any(d.tool_call_pieces for d in parsed)
    assert "".join(d.text for d in parsed) == text and parsed[-1].finish_reason == "stop"
    assert not parsed[-1].tool_calls
    assert sum("could not parse an answer" in record.message for record in caplog.records) == 1


async def whole_and_in_pieces(parser, text, finish="stop"):
    """The answer streamed whole and one character at a time: (content, [(name, arguments)], finish) of each."""
    results = []
    for size in (len(text), 1, 3):
        pieces = [text[i:i + size] for i in range(0, len(text), size)]
        deltas = [TextDelta(p, finish if i == len(pieces) - 1 else None, 5, i + 1) for i, p in enumerate(pieces)]
        prompt = planned(chat_request(tools=[WEATHER]), ModelParsers(parser))
        out = (await run_calculator(ToolCallParserCalculator, {"PROMPT": [prompt], "TEXT": deltas}))["PARSED"]
        calls = out[-1].tool_calls
        streamed = {}
        for delta in out:
            for piece in delta.tool_call_pieces:
                name, arguments = streamed.get(piece.index, (piece.name, ""))
                streamed[piece.index] = (name, arguments + piece.arguments)
        assert [streamed[i] for i in range(len(streamed))] == [(c.name, c.arguments) for c in calls]
        results.append(("".join(d.text for d in out), [(c.name, c.arguments) for c in calls], out[-1].finish_reason))
    assert results[0] == results[1] == results[2]  # however the text arrived
    return results[0]


@pytest.mark.parametrize(("parser", "text", "finish", "expected"), [
    # a name written again after the call went out does not rename it
    ("llama3", '{"name": "f", "parameters": {}, "name": "g"}', "stop", ("", [("f", "{}")], "tool_calls")),
    # an object that never became a call stays out; the calls keep their order and indexes
    ("generic", '{"tool_calls": [{"name": "g", "arguents": {}}, {"name": "f", "arguments": {}}]}', "length",
     ("", [("f", "{}")], "length")),
    # generic content: a lone surrogate is U+FFFD, an escape JSON lacks stays as written, nothing is lost
    ("generic", '{"content": "ab\\ud83dcd \\u00e9\\q"}', "stop", ("ab\ufffdcd é\\q", [], "stop")),
    # pythonic: a call whose arguments are not literals is no call; a finished call is whole JSON
    ("pythonic", "[f(a=1, b=g(2))]", "stop", ("[f(a=1, b=g(2))]", [], "stop")),
    ("pythonic", "[f(a=1e999)]", "stop", ("[f(a=1e999)]", [], "stop")),
    ("pythonic", '[f(a=1, b="x,)"), g()]', "stop", ("", [("f", '{"a": 1, "b": "x,)"}'), ("g", "{}")], "tool_calls")),
    # prose that merely looks like the start of a format's syntax is prose, even cut by max_tokens
    ("phi4", "Use functools.partial to bind arguments", "length", ("Use functools.partial to bind arguments", [],
                                                                   "length")),
    ("pythonic", "[see(here)] is a link", "length", ("[see(here)] is a link", [], "length")),
    # arguments that are no object make no call (clients parse them as one)
    ("hermes3", '<tool_call>{"name": "f", "arguments": "oops"}</tool_call>', "stop",
     ('<tool_call>{"name": "f", "arguments": "oops"}</tool_call>', [], "stop")),
    ("llama3", '{"name": "f", "parameters": 5}', "stop", ('{"name": "f", "parameters": 5}', [], "stop")),
    ("hermes3", '<tool_call>{"name": "f", "arguments": "{\\"a\\": 1}"}</tool_call>', "stop",
     ("", [("f", '{"a": 1}')], "tool_calls")),
])
async def test_malformed_and_lookalike_answers_stream_as_they_parse_whole(parser, text, finish, expected):
    assert await whole_and_in_pieces(parser, text, finish) == expected
