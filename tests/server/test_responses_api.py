"""The OpenAI Responses API over the LLM graph, through the official client: unary and streamed, the event
sequence, function tools and their outputs, structured output, and state (store, previous_response_id)."""

import json

import httpx
import jsonschema
import openai
import pytest

from tests.conftest import MODEL_NAME
from tests.server.test_bad_input import assert_openai_error

pytestmark = pytest.mark.slow

WEATHER = {"type": "function", "name": "get_weather", "description": "Get the weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
CITY = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"], "additionalProperties": False}


def create(server, **fields):
    return server.openai().responses.create(model=MODEL_NAME, temperature=0, **fields)


def test_a_unary_response_answers_with_a_message_and_usage(server):
    response = create(server, input="What is the capital of France?", instructions="Answer in one sentence.",
                      max_output_tokens=40)
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status in ("completed", "incomplete") and response.output_text
    (message,) = response.output
    assert message.type == "message" and message.role == "assistant"
    assert response.instructions == "Answer in one sentence." and response.model == MODEL_NAME
    usage = response.usage
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens and usage.output_tokens > 0


def test_max_output_tokens_leaves_the_response_incomplete_saying_why(server):
    response = create(server, input="Tell me a long story about a dragon.", max_output_tokens=5)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.usage.output_tokens == 5


def test_the_stream_follows_openais_event_sequence_and_adds_up_to_the_final_response(server):
    events = list(create(server, input="Count from one to five.", max_output_tokens=16, stream=True))
    kinds = [event.type for event in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    # whether the model ends its count within 16 tokens depends on the CPU's arithmetic: the last event says which
    final = events[-1].response
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          f"response.{final.status}"]
    if final.status == "incomplete":
        assert final.incomplete_details.reason == "max_output_tokens" and final.usage.output_tokens == 16
    else:
        assert final.status == "completed" and final.usage.output_tokens <= 16
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert [event.sequence_number for event in events] == list(range(len(events)))
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert events[-4].text == text and events[-1].response.output_text == text


def test_the_stream_ends_after_the_last_event_without_done(server):
    with httpx.stream("POST", f"{server.base_url}/v3/responses", timeout=60, json={
            "model": MODEL_NAME, "input": "Say hi.", "max_output_tokens": 4, "stream": True}) as response:
        raw = b"".join(response.iter_bytes())
    assert b"[DONE]" not in raw
    last = json.loads(raw.rstrip().split(b"\n")[-1].removeprefix(b"data: "))
    # completed or cut at 4 tokens, as the CPU's arithmetic has it; the last event says which
    assert last["type"] == f"response.{last['response']['status']}" in ("response.completed", "response.incomplete")


def test_a_forced_function_call_is_an_output_item_and_its_output_continues_the_conversation(server):
    called = create(server, input="What is the weather in Paris?", tools=[WEATHER],
                    tool_choice={"type": "function", "name": "get_weather"})
    (call,) = [item for item in called.output if item.type == "function_call"]
    assert call.name == "get_weather" and set(json.loads(call.arguments)) == {"city"}
    answered = create(server, previous_response_id=called.id, tools=[WEATHER], max_output_tokens=20,
                      input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 25 C"}])
    assert answered.previous_response_id == called.id
    assert answered.usage.input_tokens > called.usage.input_tokens  # the call and its output were in the prompt


def test_a_streamed_function_call_has_its_argument_events(server):
    events = list(create(server, input="Weather in Rome?", tools=[WEATHER], tool_choice="required", stream=True))
    kinds = [event.type for event in events]
    deltas = [event for event in events if event.type == "response.function_call_arguments.delta"]
    assert len(deltas) > 3  # the arguments stream in pieces, as the model writes them
    added = kinds.index("response.output_item.added")
    assert added < kinds.index("response.function_call_arguments.delta") < kinds.index(
        "response.function_call_arguments.done")
    done = next(event for event in events if event.type == "response.function_call_arguments.done")
    assert "".join(d.delta for d in deltas) == done.arguments and json.loads(done.arguments)["city"]
    assert all(d.item_id == done.item_id == events[added].item.id for d in deltas)
    assert events[-1].type == "response.completed"
    (call,) = events[-1].response.output
    assert call.type == "function_call" and call.arguments == done.arguments and call.id == done.item_id
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_text_format_json_schema_holds_the_answer_to_the_schema(server):
    response = create(server, input="Name a city and its country.", max_output_tokens=60, text={"format": {
        "type": "json_schema", "name": "city", "schema": CITY, "strict": True}})
    jsonschema.validate(json.loads(response.output_text), CITY)


def test_stored_responses_continue_and_can_be_read_listed_and_deleted(server):
    client = server.openai()
    first = create(server, input="My name is Ada.", max_output_tokens=12)
    second = create(server, input="What is my name?", previous_response_id=first.id, max_output_tokens=12)
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    assert client.responses.retrieve(first.id).output_text == first.output_text
    (item,) = client.responses.input_items.list(second.id).data
    assert item.type == "message" and item.content[0].text == "What is my name?"
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        create(server, input="Again?", previous_response_id=first.id)


def test_stream_and_store_are_read_as_the_request_schema_reads_them(server):
    first = httpx.post(f"{server.base_url}/v3/responses", timeout=60, headers={"authorization": "Bearer unused"}, json={
        "model": MODEL_NAME, "input": "My name is Ada.", "max_output_tokens": 4, "stream": "false", "store": "true"})
    assert first.status_code == 200 and first.json()["store"] is True
    assert server.openai().responses.retrieve(first.json()["id"]).id == first.json()["id"]


def test_store_false_keeps_nothing(server):
    response = create(server, input="Forget this.", max_output_tokens=4, store=False)
    assert response.store is False
    with pytest.raises(openai.NotFoundError):
        server.openai().responses.retrieve(response.id)


@pytest.mark.parametrize(("body", "param"), [
    ({"input": "x", "frequency": 1}, "frequency"),
    ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"input": [{"type": "message", "role": "user", "content": [{"type": "input_file", "file_id": "x"}]}]},
     "input[0].content[0].type"),
    # a text model takes no images
    ({"input": [{"type": "message", "role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
     "input[0].content[0]"),
    ({"input": [{"type": "file_search_call"}]}, "input[0].type"),
    ({"input": [{"role": "wizard", "content": "x"}]}, "input[0].role"),
    ({"input": "x", "include": ["message.output_text.logprobs"]}, "include"),
    ({"input": "x", "background": True}, "background"),
    ({"input": "x", "max_output_tokens": 0}, "max_output_tokens"),
    # read by the store before the graph sees the request (found by the fuzz test: a number was a 500)
    ({"input": 6.693051289084347e+16, "previous_response_id": "P\u0000"}, "input"),
    ({"include": "x"}, "input"),
    ({"input": "x", "previous_response_id": 5}, "previous_response_id"),
    ({"input": "x", "store": "sometimes"}, "store"),
])
def test_what_is_not_served_is_refused_by_name(server, body, param):
    response = httpx.post(f"{server.base_url}/v3/responses", json={"model": MODEL_NAME, **body}, timeout=30)
    assert_openai_error(response, 400, param)
