"""Deserialize: the URL picks the schema; invalid bodies become OpenAI errors naming the field."""

import pytest

from ovserve.calculators.llm.request import OpenAIRequestCalculator
from ovserve.errors import RequestError
from ovserve.framework.errors import CalculatorError
from ovserve.payloads import HttpRequestPayload
from ovserve.testing import run_calculator


def payload(uri, json):
    return HttpRequestPayload(uri=uri, body=b"", json=json, model="served-name")


async def deserialize(uri, json):
    return (await run_calculator(OpenAIRequestCalculator, {"HTTP_REQUEST_PAYLOAD": [payload(uri, json)]}))["REQUEST"]


async def test_chat_requests_get_a_chat_id_and_the_served_name():
    (request,) = await deserialize("/v3/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert request.kind == "chat" and request.id.startswith("chatcmpl-") and request.model == "served-name"
    assert request.created > 0 and request.body.messages[0].text() == "x"


async def test_completion_requests_are_recognised_by_their_url():
    (request,) = await deserialize("/v1/completions", {"model": "m", "prompt": "x", "unknown_field": 1})
    assert request.kind == "completion" and request.id.startswith("cmpl-")


async def refused(uri, json) -> RequestError:
    with pytest.raises(CalculatorError) as caught:
        await deserialize(uri, json)
    assert isinstance(caught.value.cause, RequestError)
    return caught.value.cause


async def test_a_missing_field_is_named():
    error = await refused("/v3/chat/completions", {"model": "m"})
    assert (error.status, error.param, error.code) == (400, "messages", "missing_required_parameter")


async def test_a_value_out_of_range_is_named_with_the_value():
    error = await refused("/v3/chat/completions",
                          {"model": "m", "messages": [{"role": "user", "content": "x"}], "top_p": 1.5})
    assert error.param == "top_p" and "less than or equal to 1" in error.message and "1.5" in error.message


async def test_a_prompt_of_the_wrong_type_lists_what_is_accepted():
    error = await refused("/v3/completions", {"model": "m", "prompt": 5})
    assert error.param == "prompt" and "expected str or list[str] or list[int]" in error.message


@pytest.mark.parametrize(("response_format", "param"), [
    ({"type": "json_schema", "json_schema": {"schema": {}}}, "response_format.json_schema.name"),
    ({"type": "json_schema", "json_schema": {"name": "a b", "schema": {}}}, "response_format.json_schema.name"),
    ({"type": "json_object", "strict": 1}, "response_format.strict"),
])
async def test_a_param_path_names_fields_only_as_openai_writes_it(response_format, param):
    """Not ``response_format.json_schema.json_schema.name``: a tagged union's tag is no field."""
    error = await refused("/v3/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "x"}],
                                                   "response_format": response_format})
    assert error.param == param


async def test_an_endpoint_of_another_kind_of_model_is_a_400_naming_the_model():
    error = await refused("/v3/embeddings", {"model": "m"})
    assert (error.status, error.param, error.code) == (400, "model", "unsupported_model")


CHAT = {"model": "m", "messages": [{"role": "user", "content": "x"}]}


@pytest.mark.parametrize(
    ("uri", "fields", "param"),
    [
        ("/v3/chat/completions", {"logit_bias": {"50256": -100}}, "logit_bias"),
        ("/v3/chat/completions", {"metadata": {"k": "v"}}, "metadata"),
        ("/v3/chat/completions", {"modalities": ["text", "audio"]}, "modalities"),
        ("/v3/chat/completions", {"functions": [{"name": "f"}]}, "functions"),
        ("/v3/chat/completions", {"skip_special_tokens": False}, "skip_special_tokens"),
        ("/v3/completions", {"best_of": 3, "n": 2, "stream": True}, "best_of"),
        ("/v3/chat/completions", {"guided_whitespace_pattern": " "}, "guided_whitespace_pattern"),
        ("/v3/chat/completions", {"add_generation_prompt": False}, "add_generation_prompt"),
        ("/v3/chat/completions", {"echo": True}, "echo"),
        ("/v3/completions", {"suffix": "end"}, "suffix"),
    ],
)
async def test_fields_that_would_change_the_answer_and_are_not_supported_are_refused(uri, fields, param):
    body = {**CHAT, **fields} if "chat" in uri else {"model": "m", "prompt": "x", **fields}
    error = await refused(uri, body)
    assert (error.status, error.param, error.code) == (400, param, "unsupported_parameter")
    assert f"'{param}'" in error.message


@pytest.mark.parametrize("fields", [{"n": 1}, {"tool_choice": "none"}, {"response_format": {"type": "text"}},
                                    {"logprobs": False}, {"store": False}, {"modalities": ["text"]},
                                    {"logit_bias": {}}, {"top_logprobs": 0}])
async def test_the_neutral_values_of_those_fields_are_accepted(fields):
    (request,) = await deserialize("/v3/chat/completions", {**CHAT, **fields})
    assert request.kind == "chat"


async def test_top_logprobs_without_logprobs_is_invalid():
    error = await refused("/v3/chat/completions", {**CHAT, "top_logprobs": 3})
    assert (error.param, error.code) == ("top_logprobs", "invalid_value")
    (request,) = await deserialize("/v3/chat/completions", {**CHAT, "top_logprobs": 3, "logprobs": True})
    assert request.body.alternatives == 3


async def test_a_logit_bias_out_of_range_is_invalid_not_unsupported():
    error = await refused("/v3/chat/completions", {**CHAT, "logit_bias": {"5": 200}})
    assert (error.param, error.code) == ("logit_bias", "invalid_value")
    error = await refused("/v3/chat/completions", {**CHAT, "logit_bias": {"hello": 1}})
    assert (error.param, error.code) == ("logit_bias.hello", "invalid_value")


async def test_fields_ignored_by_design_and_unknown_fields_are_logged_once_each(caplog):
    caplog.set_level("WARNING", logger="ovserve.llm")
    for _ in range(3):
        await deserialize("/v3/chat/completions", {**CHAT, "user": "u1", "service_tier": "auto",
                                                   "made_up_field_for_this_test": 1})
    logged = [r.getMessage() for r in caplog.records]
    assert sum("'user' (does not change the answer)" in m for m in logged) <= 1
    assert sum("'made_up_field_for_this_test' (unknown)" in m for m in logged) == 1


async def test_a_client_that_invents_field_names_grows_neither_the_log_nor_the_memory(caplog, monkeypatch):
    from ovserve.calculators.llm import request_fields

    monkeypatch.setattr(request_fields, "_logged", set())
    monkeypatch.setattr(request_fields, "_logged_full", [])
    caplog.set_level("WARNING", logger="ovserve.llm")
    for batch in range(5):
        await deserialize("/v3/chat/completions", {**CHAT, **{f"invented_{batch}_{i}": 1 for i in range(2000)}})
    assert len(request_fields._logged) == request_fields.MAX_LOGGED
    assert len(caplog.records) <= 2 + 1  # a line per request that had new names to log, and one that says no more
    assert all(len(record.getMessage()) < 1000 for record in caplog.records)


WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        ({"tool_choice": "required"}, "tool_choice", "has no tools"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_time"}}}, "tool_choice",
         "names 'get_time', which is not among the tools (get_weather)"),
        ({"tools": [WEATHER, WEATHER]}, "tools", "declares the function 'get_weather' twice"),
        ({"tools": [WEATHER], "response_format": {"type": "json_object"}}, "response_format", "combined with tools"),
    ],
)
async def test_tools_that_cannot_be_used_as_given_are_refused(fields, param, words):
    error = await refused("/v3/chat/completions", {**CHAT, **fields})
    assert error.status == 400 and error.param == param and words in error.message


async def test_tools_history_and_choices_are_accepted():
    history = [{"role": "user", "content": "Weather in Paris?"},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
               {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
    (request,) = await deserialize("/v3/chat/completions", {**CHAT, "messages": history, "tools": [WEATHER],
                                                           "tool_choice": "auto", "parallel_tool_calls": False})
    assert [t.function.name for t in request.body.callable_tools()] == ["get_weather"]
    assert request.body.messages[1].tool_calls[0].function.name == "get_weather"


@pytest.mark.parametrize(("fields", "param", "words"), [
    ({"messages": [{"role": "user", "content": "x"}] * 4097}, "messages", "4096"),
    ({"stop": ["end", "x" * 1001]}, "stop", "at most 1000 characters"),
    ({"stop": ["s"] * 17}, "stop", "at most 16 stop strings"),
])
async def test_sizes_that_would_cost_the_server_dearly_are_bounded(fields, param, words):
    error = await refused("/v3/chat/completions", {**CHAT, **fields})
    assert (error.status, error.param) == (400, param) and words in error.message
