"""response_format on the real model: the answer follows the schema, unary and streamed, chat and completions."""

import json

import httpx
import jsonschema
import openai
import pytest

from tests.conftest import MODEL_NAME

pytestmark = pytest.mark.slow

CITY = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"], "additionalProperties": False}
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in JSON."}]
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "capital", "schema": CITY, "strict": True}}


@pytest.mark.parametrize("prefix", ["/v3", "/v1"])
def test_a_json_schema_answer_validates_against_its_schema(server, prefix):
    response = server.openai(prefix).chat.completions.create(
        model=MODEL_NAME, messages=QUESTION, temperature=0, max_tokens=60, response_format=JSON_SCHEMA)
    assert response.choices[0].finish_reason == "stop"
    answer = json.loads(response.choices[0].message.content)
    jsonschema.validate(answer, CITY)
    assert "Paris" in answer["city"]


def test_a_streamed_json_schema_answer_is_the_unary_one(server):
    client = server.openai()
    unary = client.chat.completions.create(model=MODEL_NAME, messages=QUESTION, temperature=0, max_tokens=60,
                                           response_format=JSON_SCHEMA).choices[0].message.content
    chunks = client.chat.completions.create(model=MODEL_NAME, messages=QUESTION, temperature=0, max_tokens=60,
                                            response_format=JSON_SCHEMA, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == unary


def test_json_object_gives_a_json_object_even_when_sampling(server):
    client = server.openai()
    for seed in (1, 2):
        response = client.chat.completions.create(
            model=MODEL_NAME, messages=[{"role": "user", "content": "Describe a cat."}], temperature=0.8, seed=seed,
            max_tokens=80, response_format={"type": "json_object"})
        if response.choices[0].finish_reason == "stop":
            assert isinstance(json.loads(response.choices[0].message.content), dict)
        else:  # cut by max_tokens: still the beginning of an object
            assert response.choices[0].message.content.lstrip().startswith("{")


def test_completions_take_a_response_format_too(server):
    response = httpx.post(f"{server.base_url}/v3/completions", timeout=60, json={
        "model": MODEL_NAME, "prompt": "The capital of France, as JSON:", "max_tokens": 60, "temperature": 0,
        "response_format": JSON_SCHEMA})
    assert response.status_code == 200, response.text
    jsonschema.validate(json.loads(response.json()["choices"][0]["text"]), CITY)


@pytest.mark.parametrize(
    ("response_format", "param", "words"),
    [
        ({"type": "yaml"}, "response_format", "Invalid value"),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "foo"}}},
         "response_format.json_schema.schema", "not a valid JSON Schema"),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "minProperties": 2}}},
         "response_format.json_schema.schema", "'minProperties'"),
    ],
)
def test_a_schema_the_engine_cannot_take_is_refused_and_the_server_goes_on(server, response_format, param, words):
    client = server.openai()
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL_NAME, messages=QUESTION, max_tokens=10,
                                       response_format=response_format)
    assert caught.value.body["param"] == param and words in caught.value.body["message"]
    assert client.chat.completions.create(model=MODEL_NAME, messages=QUESTION, max_tokens=5).usage.completion_tokens
