"""The Messages API's request: what chat completion it becomes, and what it refuses, naming the field."""

import json

import pytest

from ovserve.calculators.llm.messages_api import MessagesCountRequest, MessagesRequest, chat_body
from ovserve.calculators.llm.request import OpenAIRequestCalculator, parse_body
from ovserve.calculators.llm.schema import ChatCompletionRequest
from ovserve.calculators.llm.tokenize import TokenizerCalculator
from ovserve.calculators.llm.types import GenerationLimits, LLMRequest
from ovserve.errors import RequestError
from ovserve.framework.errors import CalculatorError
from ovserve.payloads import HttpRequestPayload
from ovserve.testing import run_calculator
from tests.calculators.llm.fakes import chat_request, fake_tokenizer

WEATHER = {"name": "get_weather", "description": "Get the weather", "cache_control": {"type": "ephemeral"},
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def request(**fields) -> MessagesRequest:
    return parse_body(MessagesRequest, {"model": "claude-x", "max_tokens": 50,
                                        "messages": [{"role": "user", "content": "Hi"}], **fields})


def converted(**fields) -> dict:
    body = chat_body(request(**fields))
    ChatCompletionRequest.model_validate(body)  # what it becomes is a valid chat request
    return body


def refused(**fields) -> RequestError:
    with pytest.raises(RequestError) as caught:
        converted(**fields)
    return caught.value


def test_system_blocks_and_a_string_turn_become_chat_messages():
    body = converted(system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
                             {"type": "text", "text": "Be kind."}])
    assert body["messages"] == [{"role": "system", "content": "Be brief.\nBe kind."},
                                {"role": "user", "content": "Hi"}]
    assert body["max_completion_tokens"] == 50 and body["stream"] is False and "stop" not in body


def test_a_tool_round_trip_becomes_tool_calls_and_tool_messages_in_order():
    messages = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "two calls", "signature": "abc"},
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "Sunny"}]},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "no such city", "is_error": True},
            {"type": "text", "text": "And tomorrow?"}]},
    ]
    body = converted(messages=messages, tools=[WEATHER])
    assert body["messages"][1] == {"role": "assistant", "content": "Let me look.", "tool_calls": [
        {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "toolu_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]}
    assert body["messages"][2:] == [{"role": "tool", "tool_call_id": "toolu_1", "content": "Sunny"},
                                    {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: no such city"},
                                    {"role": "user", "content": "And tomorrow?"}]
    assert body["tools"] == [{"type": "function", "function": {"name": "get_weather", "description": "Get the weather",
                                                               "parameters": WEATHER["input_schema"]}}]


@pytest.mark.parametrize(("choice", "expected", "parallel"), [
    ({"type": "auto"}, "auto", True),
    ({"type": "any", "disable_parallel_tool_use": True}, "required", False),
    ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}, True),
])
def test_tool_choices_map_onto_the_chat_choices(choice, expected, parallel):
    body = converted(tools=[WEATHER], tool_choice=choice)
    assert body["tool_choice"] == expected and body["parallel_tool_calls"] is parallel


def test_tool_choice_none_offers_no_tools():
    body = converted(tools=[WEATHER], tool_choice={"type": "none"})
    assert "tools" not in body and "tool_choice" not in body


def test_sampling_stop_sequences_thinking_and_output_format_are_carried_over():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    body = converted(temperature=0, top_p=0.5, top_k=3, stop_sequences=["END", "\n\n"], stream=True,
                     thinking={"type": "enabled", "budget_tokens": 1024}, max_tokens=2000,
                     output_config={"format": {"type": "json_schema", "schema": schema}, "effort": "high"})
    assert (body["temperature"], body["top_p"], body["top_k"]) == (0, 0.5, 3)
    # the stop sequence stays in the text so that the answer can say which one matched
    assert body["stop"] == ["END", "\n\n"] and body["include_stop_str_in_output"] is True
    assert body["chat_template_kwargs"] == {"enable_thinking": True} and body["stream"] is True
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "output", "schema": schema,
                                                                              "strict": True}}
    assert converted(thinking={"type": "disabled"})["chat_template_kwargs"] == {"enable_thinking": False}


def test_fields_that_change_nothing_here_are_accepted():
    body = converted(metadata={"user_id": "u1"}, service_tier="auto", speed="fast", inference_geo="us",
                     cache_control={"type": "ephemeral"}, diagnostics={"previous_message_id": "msg_1"},
                     context_management={"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]})
    assert set(body) == {"model", "messages", "stream", "max_completion_tokens"}


@pytest.mark.parametrize(("fields", "param", "words"), [
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}, "messages[0].content[0]",
     "'type' must be one of 'text', 'tool_use'"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}, "messages[1].role",
     "prefill"),
    ({"messages": [{"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "t"}]},
                   {"role": "user", "content": "x"}]}, "messages[0].content[0].type", "cannot hold"),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type", "'custom'"),
    ({"tools": [{**WEATHER, "input_examples": [{"city": "Paris"}]}]}, "tools[0].input_examples", "at most 0"),
    ({"tool_choice": {"type": "any"}}, "tool_choice", "no tools"),
    ({"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "other"}}, "tool_choice.name", "not among"),
    ({"output_config": {"effort": "low"}}, "output_config.effort", "'high'"),
    ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "thinking.budget_tokens", "less than 'max_tokens'"),
    ({"thinking": {"type": "enabled", "budget_tokens": 10}, "max_tokens": 4000}, "thinking.budget_tokens", "1024"),
    ({"tools": [WEATHER], "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}},
     "output_config.format", "tools"),
    ({"stop_sequences": [""]}, "stop_sequences[0]", "at least 1"),
    ({"stream": "yes"}, "stream", "boolean"),
    ({"container": "c1"}, "container", "None"),
    ({"context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]}}, "context_management.edits[0]",
     "'clear_thinking_20251015'"),
    ({"mcp_servers": [{"type": "url", "url": "https://example.com/sse", "name": "x"}]}, "mcp_servers", "MCP"),
    ({"compaction": {"type": "auto"}}, "compaction", "compaction"),
])
def test_what_is_not_served_is_refused_naming_the_field(fields, param, words):
    error = refused(**fields)
    assert error.status == 400 and error.param == param and words in error.message, error.message


def test_max_tokens_is_required_and_count_tokens_does_without_it():
    with pytest.raises(RequestError) as caught:
        parse_body(MessagesRequest, {"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert caught.value.param == "max_tokens" and caught.value.code == "missing_required_parameter"
    counted = parse_body(MessagesCountRequest, {"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert "max_completion_tokens" not in chat_body(counted)


async def test_the_deserialize_node_keeps_the_messages_request_for_the_answer():
    payload = HttpRequestPayload(uri="/v1/messages", body=b"", json={
        "model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}]}, model="served")
    (llm_request,) = (await run_calculator(OpenAIRequestCalculator, {"HTTP_REQUEST_PAYLOAD": [payload]}))["REQUEST"]
    assert llm_request.id.startswith("msg_") and llm_request.model == "served" and llm_request.kind == "chat"
    assert llm_request.messages.max_tokens == 5 and llm_request.body.max_completion_tokens == 5


async def test_a_chat_level_refusal_still_comes_back_as_a_400():
    payload = HttpRequestPayload(uri="/v3/messages", body=b"", json={
        "model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}],
        "tools": [WEATHER, WEATHER]}, model="served")
    with pytest.raises(CalculatorError) as caught:
        await run_calculator(OpenAIRequestCalculator, {"HTTP_REQUEST_PAYLOAD": [payload]})
    assert isinstance(caught.value.cause, RequestError) and "twice" in caught.value.cause.message
    assert json.dumps(caught.value.cause.to_dict())  # a plain error the server renders in Anthropic's shape


async def test_the_engine_gets_no_stop_sequences_the_detokenizer_finds_them():
    spec = request(stop_sequences=["END"])
    body = ChatCompletionRequest.model_validate(chat_body(spec))
    side = {"TOKENIZER": fake_tokenizer(), "LIMITS": GenerationLimits(200)}
    for llm_request, engine_stops in ((LLMRequest("chat", body, "m", "msg_1", 0, messages=spec), ()),
                                      (chat_request(stop=["END"]), ("END",))):
        (prompt,) = (await run_calculator(TokenizerCalculator, {"REQUEST": [llm_request]}, side_packets=side))["PROMPT"]
        assert prompt.params.stop == engine_stops
    assert body.stop_strings == ("END",) and body.include_stop_str_in_output  # what the detokenizer looks for
