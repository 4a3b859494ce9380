"""Tool calls: the schema that holds the answer, the parser node, and OpenAI's tool_calls shapes."""

import json

import jsonschema

from ovserve.calculators.llm.response import OpenAIResponseCalculator
from ovserve.calculators.llm.tool_calls import ToolCallParserCalculator
from ovserve.calculators.llm.tool_parsers import parse_generic
from ovserve.calculators.llm.tools import NamedToolChoice, Tool, tool_call_schema
from ovserve.calculators.llm.types import TextDelta
from ovserve.testing import run_calculator
from tests.calculators.llm.fakes import chat_request, planned

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time"}}
TOOLS = [Tool.model_validate(WEATHER), Tool.model_validate(TIME)]
CALL = {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}


def test_the_schema_for_required_admits_calls_with_valid_arguments_only():
    schema = json.loads(tool_call_schema(TOOLS, "required", parallel=True))
    jsonschema.validate(CALL, schema)
    for wrong in ({"content": "hi"}, {"tool_calls": []}, {"tool_calls": [{"name": "get_weather", "arguments": {}}]},
                  {"tool_calls": [{"name": "nope", "arguments": {}}]}):
        assert not jsonschema.Draft202012Validator(schema).is_valid(wrong), wrong


def test_auto_admits_content_too_and_a_named_choice_or_no_parallel_calls_narrow_it():
    jsonschema.validate({"content": "hi"}, json.loads(tool_call_schema(TOOLS, "auto", parallel=True)))
    one = json.loads(tool_call_schema(TOOLS[:1], NamedToolChoice.model_validate(
        {"type": "function", "function": {"name": "get_weather"}}), parallel=False))
    two_calls = {"tool_calls": CALL["tool_calls"] * 2}
    assert not jsonschema.Draft202012Validator(one).is_valid(two_calls)
    assert not jsonschema.Draft202012Validator(one).is_valid({"content": "hi"})


def test_the_generic_format_parses_into_calls_or_content():
    content, calls = parse_generic(json.dumps(CALL))
    assert content is None and [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"city": "Paris"})]
    assert calls[0].id.startswith("call_") and len(calls[0].id) > 10
    assert parse_generic('{"content": "Hello"}') == ("Hello", ())
    assert parse_generic('{"tool_calls": [{"na') == ('{"tool_calls": [{"na', ())


async def parse(request, texts):
    return (await run_calculator(ToolCallParserCalculator, {"PROMPT": [planned(request)], "TEXT": texts}))["PARSED"]


async def test_the_parser_passes_answers_without_tools_through_delta_by_delta():
    texts = [TextDelta('{"a"', None, 3, 1), TextDelta(": 1}", "stop", 3, 2)]
    assert await parse(chat_request(), texts) == texts


async def test_the_parser_turns_a_whole_answer_into_tool_calls():
    text = json.dumps(CALL)
    texts = [TextDelta(text[:10], None, 3, 1), TextDelta(text[10:], "stop", 3, 9)]
    (parsed,) = await parse(chat_request(tools=[WEATHER], tool_choice="required"), texts)
    assert parsed.finish_reason == "tool_calls" and parsed.text == "" and parsed.completion_tokens == 9
    assert [c.name for c in parsed.tool_calls] == ["get_weather"]


async def test_an_answer_cut_inside_the_call_syntax_before_a_call_is_no_content():
    (parsed,) = await parse(chat_request(tools=[WEATHER]), [TextDelta('{"tool_calls": [', "length", 3, 4)])
    assert (parsed.text, parsed.finish_reason, parsed.tool_calls) == ("", "length", ())


async def test_a_call_cut_by_max_tokens_keeps_the_arguments_written_as_openai_does():
    cut = '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Par'
    texts = [TextDelta(cut[:30], None, 3, 5), TextDelta(cut[30:], "length", 3, 10)]
    parsed = await parse(chat_request(tools=[WEATHER], tool_choice="required"), texts)
    assert "".join(d.text for d in parsed) == "" and parsed[-1].finish_reason == "length"
    (call,) = parsed[-1].tool_calls
    assert (call.name, call.arguments) == ("get_weather", '{"city": "Par')
    assert "".join(p.arguments for d in parsed for p in d.tool_call_pieces) == call.arguments


async def test_a_call_cut_after_its_name_is_a_call_with_no_arguments_yet():
    texts = [TextDelta('{"tool_calls": [{"name": "get_weather", "argu', "length", 3, 10)]
    (parsed,) = await parse(chat_request(tools=[WEATHER], tool_choice="required"), texts)
    assert [(c.name, c.arguments) for c in parsed.tool_calls] == [("get_weather", "")]
    assert [(p.index, p.name) for p in parsed.tool_call_pieces] == [(0, "get_weather")]


async def test_generic_content_streams_as_text_as_it_is_written():
    answer = json.dumps({"content": "Caf\u00e9 \"ok\"\n\ud83d\ude00 done"}, ensure_ascii=True)
    texts = [TextDelta(c, "stop" if i == len(answer) - 1 else None, 3, i + 1) for i, c in enumerate(answer)]
    parsed = await parse(chat_request(tools=[WEATHER]), texts)
    assert "".join(d.text for d in parsed) == 'Café "ok"\n😀 done'
    assert sum(bool(d.text) for d in parsed if d.finish_reason is None) > 10  # it streamed, not at the end
    assert parsed[-1].finish_reason == "stop" and not parsed[-1].tool_calls


async def test_deeply_nested_arguments_stream_without_recursion():
    nested = '{"a": ' * 50_000 + "1" + "}" * 50_000
    answer = '{"tool_calls": [{"name": "get_weather", "arguments": ' + nested + "}]}"
    parsed = await parse(chat_request(tools=[WEATHER]), [TextDelta(answer, "stop", 3, 9)])
    assert parsed[-1].tool_calls[0].arguments == nested


async def serialized_calls(stream):
    (parsed,) = await parse(chat_request(tools=[WEATHER]), [TextDelta(json.dumps(CALL), "stop", 3, 9)])
    request = chat_request(tools=[WEATHER], stream=stream)
    out = await run_calculator(OpenAIResponseCalculator, {"REQUEST": [request], "TEXT": [parsed]})
    return b"".join(p.body for p in out["HTTP_RESPONSE_PAYLOAD"]).decode()


async def test_an_answer_with_tool_calls_has_no_content_and_finishes_with_tool_calls():
    choice = json.loads(await serialized_calls(stream=False))["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}


async def test_streamed_tool_calls_send_id_and_name_first_then_the_arguments():
    chunks = [json.loads(block.removeprefix("data: ")) for block in (await serialized_calls(stream=True)).split("\n\n")
              if block and block != "data: [DONE]"]
    pieces = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if c["choices"][0]["delta"].get("tool_calls")]
    assert pieces[0]["index"] == 0 and pieces[0]["id"].startswith("call_") and pieces[0]["type"] == "function"
    assert pieces[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert pieces[1] == {"index": 0, "function": {"arguments": '{"city": "Paris"}'}}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_a_tools_own_definitions_and_references_still_resolve_in_the_combined_schema():
    nested = Tool.model_validate({"type": "function", "function": {"name": "ship", "parameters": {
        "type": "object", "properties": {"to": {"$ref": "#/$defs/Address"}}, "required": ["to"],
        "$defs": {"Address": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}}})
    schema = json.loads(tool_call_schema([nested, TOOLS[0]], "required", parallel=True))
    good = {"tool_calls": [{"name": "ship", "arguments": {"to": {"city": "Paris"}}}]}
    jsonschema.validate(good, schema)
    assert not jsonschema.Draft202012Validator(schema).is_valid(
        {"tool_calls": [{"name": "ship", "arguments": {"to": {"street": "x"}}}]})
