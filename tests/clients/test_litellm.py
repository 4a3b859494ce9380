"""LiteLLM against the server, as its OpenAI-compatible provider (``model="openai/<name>"`` with ``api_base``):
chat, streaming, a forced tool call and structured output, sync and async."""

import json
import os

import jsonschema
import pytest
from pydantic import BaseModel

from tests.clients import refuse_the_network
from tests.conftest import MODEL_NAME

# LiteLLM fetches its model price map from the internet when it is imported, unless told to use the copy it ships.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
import litellm  # after the setting above

pytestmark = [
    pytest.mark.slow,
    # LiteLLM's own TypedDicts, as pydantic builds their schemas: not ours to fix.
    pytest.mark.filterwarnings("ignore:Items? .* (is|are) using the `ReadOnly` qualifier:UserWarning"),
]

HELLO = [{"role": "user", "content": "Say hello to me."}]
WEATHER_QUESTION = [{"role": "user", "content": "What is the weather like in Paris?"}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME_PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}, "timezone": {"type": "string"}},
                   "required": ["city", "timezone"], "additionalProperties": False}
TIME = {"type": "function", "function": {"name": "get_time", "description": "Get the time in a city",
                                         "parameters": TIME_PARAMETERS}}
CITY = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"], "additionalProperties": False}
CAPITAL_QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in JSON."}]


class Capital(BaseModel):
    country: str
    capital: str


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    refuse_the_network(monkeypatch)


def fields(server, **more):
    """What every call passes: the server as an OpenAI-compatible provider, greedy, short, no retries."""
    return {"model": f"openai/{MODEL_NAME}", "api_base": f"{server.base_url}/v3", "api_key": "unused",
            "messages": HELLO, "temperature": 0, "max_tokens": 16, "max_retries": 0, "timeout": 60, **more}


def test_chat_answers_with_text(server):
    response = litellm.completion(**fields(server))
    choice = response.choices[0]
    assert choice.message.role == "assistant" and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert 0 < response.usage.completion_tokens <= 16


def test_a_stream_assembles_into_the_unary_answer(server):
    unary = litellm.completion(**fields(server)).choices[0]
    chunks = list(litellm.completion(**fields(server, stream=True)))
    assert len(chunks) > 1
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    finish_reasons = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
    assert text.strip() and text == unary.message.content
    assert finish_reasons == [unary.finish_reason]
    assert unary.finish_reason in ("stop", "length")


def test_a_forced_tool_choice_returns_that_call_with_arguments_for_its_parameters(server):
    response = litellm.completion(**fields(
        server, messages=WEATHER_QUESTION, max_tokens=80, tools=[WEATHER, TIME], parallel_tool_calls=False,
        tool_choice={"type": "function", "function": {"name": "get_time"}}))
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_time" and call.id
    jsonschema.validate(json.loads(call.function.arguments), TIME_PARAMETERS)


def test_a_json_schema_response_format_gives_json_that_validates(server):
    response = litellm.completion(**fields(
        server, messages=CAPITAL_QUESTION, max_tokens=60,
        response_format={"type": "json_schema", "json_schema": {"name": "capital", "schema": CITY, "strict": True}}))
    assert response.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(response.choices[0].message.content), CITY)


def test_a_pydantic_response_format_gives_that_model(server):
    """LiteLLM turns the class into a json_schema response_format itself."""
    response = litellm.completion(**fields(server, messages=CAPITAL_QUESTION, max_tokens=60, response_format=Capital))
    assert response.choices[0].finish_reason == "stop"
    Capital.model_validate_json(response.choices[0].message.content)


async def test_async_chat_and_stream(server):
    unary = (await litellm.acompletion(**fields(server))).choices[0]
    assert unary.message.content.strip() and unary.finish_reason in ("stop", "length")
    stream = await litellm.acompletion(**fields(server, stream=True))
    chunks = [chunk async for chunk in stream]
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices) == unary.message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [unary.finish_reason]
