"""The Anthropic Messages API over the LLM graph, through the official ``anthropic`` client (validating every answer
strictly against its own types): unary and streamed, tool use and its result, count_tokens, stop sequences,
structured output, and errors in Anthropic's shape."""

import json

import anthropic
import httpx
import jsonschema
import pytest

from tests.conftest import MODEL_NAME, start_server

pytestmark = pytest.mark.slow

WEATHER = {"name": "get_weather", "description": "Get the weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
CITY = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"], "additionalProperties": False}
#: Any claude-* name reaches the only text generation model (the default alias).
CLAUDE = "claude-sonnet-4-5"


def client(server, api_key: str = "unused", **options) -> anthropic.Anthropic:
    """The official client, as an Anthropic client is pointed at ovserve (base URL: the server's root), without
    retries, validating answers strictly."""
    return anthropic.Anthropic(base_url=server.base_url, api_key=api_key, max_retries=0,
                               _strict_response_validation=True, **options)


def create(server, **fields) -> anthropic.types.Message:
    fields.setdefault("messages", [{"role": "user", "content": "What is the capital of France?"}])
    return client(server).messages.create(model=fields.pop("model", CLAUDE), max_tokens=fields.pop("max_tokens", 30),
                                          **fields)


def test_a_unary_message_answers_with_text_and_usage(server):
    message = create(server, system=[{"type": "text", "text": "Answer in one sentence.",
                                      "cache_control": {"type": "ephemeral"}}])
    assert message.id.startswith("msg_") and message.type == "message" and message.role == "assistant"
    assert message.model == MODEL_NAME  # the model that answered
    (block,) = message.content
    assert block.type == "text" and block.text
    assert message.stop_reason in ("end_turn", "max_tokens") and message.stop_sequence is None
    assert message.usage.input_tokens > 0 and 0 < message.usage.output_tokens <= 30
    if message.stop_reason == "max_tokens":
        assert message.usage.output_tokens == 30


def test_the_stream_follows_anthropics_event_sequence_and_adds_up_to_the_final_message(server):
    with client(server).messages.stream(model=CLAUDE, max_tokens=16, extra_body={"temperature": 0},
                                        messages=[{"role": "user", "content": "Count from one to five."}]) as stream:
        events = list(stream)
        final = stream.get_final_message()
    raw = [event for event in events if event.type in ("message_start", "content_block_start", "content_block_delta",
                                                        "content_block_stop", "message_delta", "message_stop")]
    kinds = [event.type for event in raw]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds[1] == "content_block_start" and kinds[-3] == "content_block_stop"
    assert set(kinds[2:-3]) == {"content_block_delta"}
    deltas = [event.delta for event in raw if event.type == "content_block_delta"]
    assert {delta.type for delta in deltas} == {"text_delta"}
    (block,) = final.content
    assert block.text == "".join(delta.text for delta in deltas) and block.text
    assert raw[0].message.usage.input_tokens == final.usage.input_tokens > 0
    assert raw[-2].delta.stop_reason == final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.output_tokens == raw[-2].usage.output_tokens <= 16


def test_a_forced_tool_use_and_its_result(server):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    message = create(server, max_tokens=200, tools=[WEATHER], messages=messages,
                     tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True})
    calls = [block for block in message.content if block.type == "tool_use"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].id
    jsonschema.validate(calls[0].input, WEATHER["input_schema"])
    assert message.stop_reason == "tool_use"  # a call held to its schema ends well within 200 tokens
    # the call and its result go back; the answer is a message of its own (a call again, or text)
    messages += [{"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in message.content]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": calls[0].id,
                                               "content": [{"type": "text", "text": "Sunny, 22 C"}]}]}]
    follow_up = create(server, max_tokens=40, tools=[WEATHER], messages=messages)
    assert follow_up.content and follow_up.usage.input_tokens > message.usage.input_tokens


def test_a_streamed_tool_use_gives_its_input_as_json_deltas(server):
    with client(server).messages.stream(model=CLAUDE, max_tokens=200, tools=[WEATHER], tool_choice={"type": "any"},
                                        messages=[{"role": "user", "content": "Weather in Rome?"}]) as stream:
        events = list(stream)
        final = stream.get_final_message()
    (call,) = [block for block in final.content if block.type == "tool_use"]
    deltas = [event.delta.partial_json for event in events
              if event.type == "content_block_delta" and event.delta.type == "input_json_delta"]
    assert len(deltas) > 3  # in pieces, as the model writes them
    assert json.loads("".join(deltas)) == call.input and final.stop_reason == "tool_use"
    starts = [event.content_block for event in events if event.type == "content_block_start"]
    assert starts[-1].type == "tool_use" and starts[-1].id == call.id and starts[-1].name == "get_weather"


def test_count_tokens_counts_what_the_message_is_charged(server):
    prompt = {"system": "You are terse.", "tools": [WEATHER], "tool_choice": {"type": "auto"},
              "messages": [{"role": "user", "content": "Is it raining in Oslo?"}]}
    counted = client(server).messages.count_tokens(model=CLAUDE, **prompt)
    message = create(server, max_tokens=20, **prompt)
    assert counted.input_tokens == message.usage.input_tokens > 0
    without_tools = client(server).messages.count_tokens(model=CLAUDE, messages=prompt["messages"])
    assert without_tools.input_tokens < counted.input_tokens


def test_a_stop_sequence_ends_the_answer_and_is_named(server):
    # a space comes early in any sentence; "xyzzy" never does
    for stops in ([" ", "xyzzy"], ["e", " "]):
        message = create(server, max_tokens=40, stop_sequences=stops, extra_body={"temperature": 0},
                         messages=[{"role": "user", "content": "Describe the sea in a sentence."}])
        assert message.stop_reason == "stop_sequence" and message.stop_sequence in stops
        text = "".join(block.text for block in message.content)
        assert not any(stop in text for stop in stops)  # the text ends where the first stop sequence began
        if stops == [" ", "xyzzy"]:
            assert message.stop_sequence == " "
    with client(server).messages.stream(model=CLAUDE, max_tokens=40, stop_sequences=[" "],
                                        messages=[{"role": "user", "content": "Describe the sea."}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", " ") and " " not in text


def test_output_config_holds_the_answer_to_a_json_schema(server):
    message = create(server, max_tokens=200, output_config={"format": {"type": "json_schema", "schema": CITY}},
                     messages=[{"role": "user", "content": "Name a city and its country."}])
    assert message.stop_reason == "end_turn"
    jsonschema.validate(json.loads(message.content[0].text), CITY)


def test_thinking_on_a_model_that_does_not_think_is_an_answer_without_thinking(server):
    message = create(server, max_tokens=1100, thinking={"type": "enabled", "budget_tokens": 1024})
    assert [block.type for block in message.content] == ["text"]


def error_of(answer: httpx.Response, status: int, kind: str, words: str = "") -> str:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"type", "error", "request_id"} and body["type"] == "error"
    assert body["error"]["type"] == kind and words in body["error"]["message"], body
    return body["error"]["message"]


def post(server, body, path="/v1/messages", **headers) -> httpx.Response:
    return httpx.post(f"{server.base_url}{path}", json=body, timeout=60,
                      headers={"anthropic-version": "2023-06-01", "anthropic-beta": "any-beta", **headers})


BASE = {"model": CLAUDE, "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}


@pytest.mark.parametrize(("path", "body", "status", "kind", "words"), [
    ("/v1/messages", {**BASE, "max_tokens": "many"}, 400, "invalid_request_error", "'max_tokens'"),
    ("/v1/messages", {**BASE, "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}, 400,
     "invalid_request_error", "messages[0].content[0]"),
    ("/v3/messages", {**BASE, "output_config": {"effort": "max"}}, 400, "invalid_request_error",
     "output_config.effort"),
    ("/v1/messages", {**BASE, "model": "no-such-model"}, 404, "not_found_error", "no-such-model"),
    ("/v1/messages/count_tokens", {"model": "no-such-model", "messages": BASE["messages"]}, 404, "not_found_error",
     "no-such-model"),
    ("/v1/messages/count_tokens", {"model": CLAUDE, "messages": []}, 400, "invalid_request_error", "'messages'"),
    # refused inside the graph, by the tokenize node
    ("/v1/messages", {**BASE, "max_tokens": 10_000_000}, 400, "invalid_request_error", "context length"),
])
def test_errors_come_in_anthropics_shape_and_the_server_keeps_serving(server, path, body, status, kind, words):
    error_of(post(server, body, path), status, kind, words)
    assert post(server, BASE).status_code == 200


def test_the_client_raises_its_own_error_classes(server):
    with pytest.raises(anthropic.NotFoundError) as missing:
        create(server, model="no-such-model")
    assert missing.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as bad:
        create(server, messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hel"}])
    assert "prefill" in bad.value.message


@pytest.fixture(scope="module")
def locked_server(default_model, tmp_path_factory):
    server = start_server(["--model", str(default_model), "--model-name", MODEL_NAME, "--api-key", "sesame",
                           "--model-alias", "claude-*-haiku*=" + MODEL_NAME], tmp_path_factory.mktemp("locked"))
    yield server
    server.stop()


def test_a_server_with_a_key_takes_it_as_x_api_key_or_bearer(locked_server):
    with pytest.raises(anthropic.AuthenticationError) as refused:
        client(locked_server, api_key="wrong").messages.create(model="claude-3-5-haiku-latest", max_tokens=5,
                                                               messages=[{"role": "user", "content": "Hi"}])
    assert refused.value.status_code == 401 and refused.value.body["error"]["type"] == "authentication_error"
    error_of(post(locked_server, BASE), 401, "authentication_error", "x-api-key")  # no key at all
    answer = client(locked_server, api_key="sesame").messages.create(
        model="claude-3-5-haiku-latest", max_tokens=5, messages=[{"role": "user", "content": "Hi"}])
    assert answer.model == MODEL_NAME
    bearer = anthropic.Anthropic(base_url=locked_server.base_url, auth_token="sesame", max_retries=0)
    assert bearer.messages.count_tokens(model=MODEL_NAME, messages=[{"role": "user", "content": "Hi"}]).input_tokens
    # with aliases given, only they apply: another claude name is unknown
    error_of(post(locked_server, {**BASE, "model": CLAUDE}, **{"x-api-key": "sesame"}), 404, "not_found_error")
