"""Bad input gets an OpenAI-shaped error with the right status, and the server keeps serving."""

import httpx
import pytest

from tests.conftest import MODEL_NAME

pytestmark = pytest.mark.slow

GOOD = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 3}


def post(server, body, path="/v3/chat/completions", **kwargs):
    return httpx.post(f"{server.base_url}{path}", timeout=60, **({"json": body} if body is not None else {}), **kwargs)


def assert_openai_error(response, status, param=None, words=""):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == ("invalid_request_error" if status < 500 else "server_error")
    assert words in error["message"]
    if param is not None:
        assert error["param"] == param
    return error


@pytest.mark.parametrize(
    ("body", "status", "param", "words"),
    [
        ({"model": "no-such-model", "messages": GOOD["messages"]}, 404, "model", "does not exist"),
        ({"model": "", "messages": GOOD["messages"]}, 400, "model", "you must provide a model parameter"),
        ({"model": MODEL_NAME}, 400, "messages", "required"),
        ({**GOOD, "messages": []}, 400, "messages", "at least 1"),
        ({**GOOD, "messages": "hello"}, 400, "messages", "Invalid value"),
        ({**GOOD, "messages": [{"role": "wizard", "content": "x"}]}, 400, "messages[0].role", "Invalid value"),
        ({**GOOD, "temperature": 5}, 400, "temperature", "less than or equal to 2"),
        ({**GOOD, "temperature": "hot"}, 400, "temperature", "Invalid value"),
        ({**GOOD, "max_tokens": -1}, 400, "max_tokens", "greater than or equal to 0"),
        ({**GOOD, "max_tokens": 0}, 400, "max_tokens", "must be at least 1"),
        ({**GOOD, "top_p": 0}, 400, "top_p", "greater than 0"),
        ({**GOOD, "n": 0}, 400, "n", "greater than or equal to 1"),
        ({**GOOD, "stop": [""]}, 400, "stop", "must not be empty"),
        ({**GOOD, "stream": "yes please"}, 400, "stream", "Invalid value"),
        ({**GOOD, "max_tokens": 9000}, 400, "max_tokens", "maximum context length is 8192 tokens"),
        # restarted the engine (a failed step) before it was refused
        ({**GOOD, "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {
            "type": "integer", "minimum": -1e40, "maximum": 1e40}}}}, 400, "response_format.json_schema.schema",
         "minimum -1e+40 on an integer"),
    ],
)
def test_bad_chat_requests_are_refused_and_the_next_request_works(server, body, status, param, words):
    starts = server.metric("ovserve_engine_starts_total")
    assert_openai_error(post(server, body), status, param, words)
    assert post(server, GOOD).status_code == 200
    assert server.metric("ovserve_engine_starts_total") == starts  # the engine never stopped


def test_malformed_json_is_a_400(server):
    response = httpx.post(f"{server.base_url}/v3/chat/completions", content=b'{"model": ', timeout=30,
                          headers={"content-type": "application/json"})
    assert_openai_error(response, 400, words="not valid JSON")
    response = httpx.post(f"{server.base_url}/v3/chat/completions", content=b"[1, 2]", timeout=30)
    assert_openai_error(response, 400, words="JSON object")
    assert post(server, GOOD).status_code == 200


def test_a_prompt_longer_than_the_context_names_both_numbers(server):
    long_prompt = "hello " * 9000
    response = post(server, {"model": MODEL_NAME, "prompt": long_prompt, "max_tokens": 5}, "/v3/completions")
    error = assert_openai_error(response, 400, words="maximum context length is 8192 tokens")
    assert "9000 tokens" in error["message"] or "9001 tokens" in error["message"]
    assert error["code"] == "context_length_exceeded"
    assert post(server, GOOD).status_code == 200


def test_bad_completion_requests(server):
    assert_openai_error(post(server, {"model": MODEL_NAME}, "/v3/completions"), 400, "prompt", "required")
    assert_openai_error(post(server, {"model": MODEL_NAME, "prompt": ""}, "/v3/completions"), 400, "prompt",
                        "must not be empty")
    assert_openai_error(post(server, {"model": MODEL_NAME, "prompt": ["a", [1]]}, "/v3/completions"), 400, "prompt",
                        "one kind only")


def test_unknown_routes_and_methods_get_json_errors(server):
    assert_openai_error(httpx.get(f"{server.base_url}/v3/nothing-here"), 404, words="no route")
    assert_openai_error(httpx.get(f"{server.base_url}/v3/completions"), 405)  # GET chat/completions lists stored ones
    assert_openai_error(httpx.get(f"{server.base_url}/v3/models/unknown"), 404, "model", "does not exist")


def test_bad_input_in_a_stream_is_an_error_before_the_stream_starts(server):
    response = post(server, {**GOOD, "stream": True, "max_tokens": 9000})
    assert_openai_error(response, 400, "max_tokens")
    assert response.headers["content-type"].startswith("application/json")
