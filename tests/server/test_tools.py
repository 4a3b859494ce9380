"""Tools on the real model (its template has no tools: the generic format, held by constrained decoding)."""

import json

import jsonschema
import openai
import pytest

from tests.conftest import MODEL_NAME

pytestmark = pytest.mark.slow

PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
              "required": ["city", "unit"], "additionalProperties": False}
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Get the weather in a city",
                                            "parameters": PARAMETERS}}
TIME = {"type": "function", "function": {"name": "get_time", "description": "Get the time in a city",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                        "required": ["city"]}}}
ASK = [{"role": "user", "content": "What is the weather like in Paris?"}]


def ask(client, **fields):
    return client.chat.completions.create(model=MODEL_NAME, messages=ASK, tools=[WEATHER, TIME],
                                          **{"temperature": 0, "max_tokens": 80, **fields})


@pytest.mark.parametrize("prefix", ["/v3", "/v1"])
def test_a_required_call_is_valid_for_the_tools_parameters(server, prefix):
    choice = ask(server.openai(prefix), tool_choice="required").choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert choice.message.tool_calls
    for call in choice.message.tool_calls:
        assert call.id.startswith("call_") and call.type == "function"
        schema = PARAMETERS if call.function.name == "get_weather" else TIME["function"]["parameters"]
        jsonschema.validate(json.loads(call.function.arguments), schema)


def test_a_named_function_is_the_one_called(server):
    choice = ask(server.openai(), tool_choice={"type": "function", "function": {"name": "get_time"}}).choices[0]
    assert [c.function.name for c in choice.message.tool_calls] == ["get_time"]
    jsonschema.validate(json.loads(choice.message.tool_calls[0].function.arguments), TIME["function"]["parameters"])


def stream_calls(client, **fields):
    """A streamed answer's calls as a client joins them, and what arrived when: (calls by index, the chunk numbers
    that carried call pieces, the chunk number of the finish, the finish reason, the content)."""
    calls: dict[int, dict] = {}
    piece_chunks, finish_at, finish, content = [], None, None, ""
    for number, chunk in enumerate(ask(client, stream=True, **fields)):
        for choice in chunk.choices:
            content += choice.delta.content or ""
            if choice.finish_reason:
                finish_at, finish = number, choice.finish_reason
            for piece in choice.delta.tool_calls or ():
                piece_chunks.append(number)
                if piece.id is not None:  # the first piece of a call: its id, type and name
                    assert piece.index not in calls and piece.type == "function" and piece.function.name
                    calls[piece.index] = {"id": piece.id, "name": piece.function.name, "arguments": ""}
                else:
                    assert piece.function.name is None
                calls[piece.index]["arguments"] += piece.function.arguments or ""
    return calls, piece_chunks, finish_at, finish, content


def check_streamed_call(client, **fields):
    """A required call streams as OpenAI's do: id and name first, the arguments in pieces, before the finish."""
    calls, piece_chunks, finish_at, finish, content = stream_calls(client, tool_choice="required",
                                                                   parallel_tool_calls=False, **fields)
    assert finish == "tool_calls" and content == "" and len(calls) == 1
    assert calls[0]["id"].startswith("call_")
    assert piece_chunks[0] < finish_at and len(piece_chunks) > 3  # in pieces, as the model wrote them
    schema = PARAMETERS if calls[0]["name"] == "get_weather" else TIME["function"]["parameters"]
    jsonschema.validate(json.loads(calls[0]["arguments"]), schema)


def test_a_streamed_call_arrives_in_pieces_before_the_answer_ends(server):
    check_streamed_call(server.openai())


@pytest.mark.parametrize("stream", [False, True])
def test_a_required_call_cut_by_max_tokens_is_a_call_with_the_arguments_written(server, stream):
    """As OpenAI answers: the call, its arguments as far as they got, finish_reason length; never the call's
    syntax as content."""
    fields = {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "max_tokens": 30}
    if stream:
        calls, _, _, finish, content = stream_calls(server.openai(), **fields)
        (call,) = calls.values()
        name, arguments = call["name"], call["arguments"]
    else:
        choice = ask(server.openai(), **fields).choices[0]
        finish, content = choice.finish_reason, choice.message.content
        (call,) = choice.message.tool_calls
        name, arguments = call.function.name, call.function.arguments
    assert finish == "length" and not content and name == "get_weather"
    assert arguments == "" or arguments.startswith("{")  # as far as the model got before max_tokens


def test_auto_answers_with_a_call_or_with_content(server):
    choice = ask(server.openai(), tool_choice="auto").choices[0]
    if choice.finish_reason == "tool_calls":
        assert choice.message.tool_calls and choice.message.content is None
    elif choice.finish_reason == "stop":
        assert choice.message.content and not choice.message.tool_calls
    else:  # cut by max_tokens: where the model ends depends on the CPU's arithmetic
        assert choice.finish_reason == "length" and not choice.message.tool_calls


def test_tool_choice_none_answers_in_text(server):
    choice = ask(server.openai(), tool_choice="none").choices[0]
    assert choice.message.tool_calls is None and choice.message.content


def test_a_tool_result_in_the_history_gets_an_answer(server):
    history = [*ASK, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 21, "sky": "sunny"}'}]
    response = server.openai().chat.completions.create(model=MODEL_NAME, messages=history, temperature=0,
                                                       max_tokens=60, tools=[WEATHER])
    choice = response.choices[0]
    assert choice.finish_reason in ("stop", "tool_calls", "length")
    assert choice.message.content or choice.message.tool_calls


def test_arguments_that_are_not_json_in_the_history_are_refused(server):
    history = [*ASK, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{city: Paris"}}]}]
    with pytest.raises(openai.BadRequestError) as caught:
        server.openai().chat.completions.create(model=MODEL_NAME, messages=history, max_tokens=5, tools=[WEATHER])
    assert caught.value.body["param"] == "messages[1].tool_calls[0].function.arguments"


@pytest.fixture(scope="module")
def hermes_server(default_model, tmp_path_factory):
    from tests.conftest import start_server

    server = start_server(["--model", str(default_model), "--model-name", MODEL_NAME, "--tool-parser", "hermes3",
                           "--reasoning-parser", "qwen3"], tmp_path_factory.mktemp("hermes"))
    yield server
    server.stop()


def test_a_family_parser_chosen_by_flag_answers_auto_freely(hermes_server):
    assert "tool calls in the hermes3 format" in "".join(hermes_server.lines)
    choice = ask(hermes_server.openai(), tool_choice="auto", max_tokens=30).choices[0]  # this model writes no <tool_call>
    assert choice.message.content and choice.finish_reason in ("stop", "length") and not choice.message.tool_calls


@pytest.fixture(scope="module", params=["llama3", "phi4"])
def family_server(request, default_model, tmp_path_factory):
    from tests.conftest import start_server

    server = start_server(["--model", str(default_model), "--model-name", MODEL_NAME, "--tool-parser", request.param],
                          tmp_path_factory.mktemp(request.param))
    yield server
    server.stop()


def check_forced_calls(client, parser):
    """required and a named function hold even this model, which was not trained for the format, to valid calls."""
    required = ask(client, tool_choice="required", parallel_tool_calls=False).choices[0]
    assert required.finish_reason == "tool_calls" and required.message.content is None, (parser, required)
    (call,) = required.message.tool_calls
    schema = PARAMETERS if call.function.name == "get_weather" else TIME["function"]["parameters"]
    jsonschema.validate(json.loads(call.function.arguments), schema)
    named = ask(client, tool_choice={"type": "function", "function": {"name": "get_time"}},
                max_tokens=120).choices[0]  # parallel calls allowed: this model repeats them until cut off
    assert named.message.tool_calls and {c.function.name for c in named.message.tool_calls} == {"get_time"}
    for named_call in named.message.tool_calls:
        jsonschema.validate(json.loads(named_call.function.arguments), TIME["function"]["parameters"])


def test_required_and_named_calls_in_the_hermes3_format(hermes_server):
    check_forced_calls(hermes_server.openai(), "hermes3")
    # the qwen3 reasoning parser streams an answer without <think> as it comes: this template does not open the tag
    check_streamed_call(hermes_server.openai())


def test_required_and_named_calls_in_the_llama3_and_phi4_formats(family_server):
    assert "tool calls in the" in "".join(family_server.lines)
    check_forced_calls(family_server.openai(), family_server)
    check_streamed_call(family_server.openai())


def test_a_reasoning_parser_chosen_by_flag_takes_reasoning_effort(hermes_server, server):
    assert "reasoning in the qwen3 format" in "".join(hermes_server.lines)
    message = hermes_server.openai().chat.completions.create(
        model=MODEL_NAME, messages=ASK, temperature=0, max_tokens=20, reasoning_effort="low").choices[0].message
    assert message.content  # this model writes no <think>: all of it is content
    assert getattr(message, "reasoning_content", None) is None
    with pytest.raises(openai.BadRequestError) as caught:  # the default server's model does not reason
        server.openai().chat.completions.create(model=MODEL_NAME, messages=ASK, max_tokens=5, reasoning_effort="low")
    assert caught.value.body["param"] == "reasoning_effort"
