"""Without a model: Anthropic's error shape on the Messages API's paths (OpenAI's elsewhere, and an ``error`` event
when a stream fails), ``x-api-key``, and model aliases."""

import time

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ovserve.errors import RequestError
from ovserve.framework.packet import Packet
from ovserve.payloads import HttpRequestPayload, HttpResponsePayload
from ovserve.server.guard import GuardSettings, RequestGuard
from ovserve.server.metrics import ServerMetrics
from ovserve.server.responses import GraphResponse, RequestRecorder, anthropic_error_event, error_response
from ovserve.server.routes import OpenAIRoutes, ServerSettings, model_alias
from ovserve.server.servables import Servables
from ovserve.server.serve_settings import model_aliases


async def refuse(request: Request) -> Response:
    status = int(request.query_params["status"])
    return error_response(RequestError(f"refused with {status}", status=status))


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def client(**settings) -> httpx.AsyncClient:
    routes = [Route(path, refuse, methods=["POST"]) for path in ("/v1/messages", "/v3/messages/count_tokens",
                                                                 "/v3/chat/completions")]
    app = Starlette(routes=[*routes, Route("/v1/ok", ok, methods=["POST"])],
                    middleware=[Middleware(RequestGuard, settings=GuardSettings(**settings))])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.mark.parametrize(("status", "kind"), [(400, "invalid_request_error"), (401, "authentication_error"),
                                              (403, "permission_error"), (404, "not_found_error"),
                                              (408, "invalid_request_error"), (413, "request_too_large"),
                                              (429, "rate_limit_error"), (500, "api_error"),
                                              (503, "overloaded_error"), (504, "timeout_error")])
async def test_errors_on_the_messages_paths_take_anthropics_shape_with_the_same_status(status, kind):
    async with client() as http:
        for path in ("/v1/messages", "/v3/messages/count_tokens"):
            answer = await http.post(f"{path}?status={status}", headers={"x-request-id": "r1"})
            assert answer.status_code == status
            assert answer.json() == {"type": "error", "error": {"type": kind, "message": f"refused with {status}"},
                                     "request_id": "r1"}
            assert ("retry-after" in answer.headers) == (status in (429, 503))
        assert (await http.post(f"/v3/chat/completions?status={status}")).json()["error"]["message"] == (
            f"refused with {status}")


async def test_x_api_key_is_a_key_as_bearer_is_and_a_refusal_on_messages_is_anthropic_shaped():
    async with client(api_keys=("k1",)) as http:
        assert (await http.post("/v1/ok", headers={"x-api-key": "k1"})).status_code == 200
        assert (await http.post("/v1/ok", headers={"Authorization": "Bearer nope", "x-api-key": "k1"})).status_code \
            == 200
        refused = await http.post("/v1/messages?status=200", headers={"x-api-key": "k2"})
        assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
        assert "x-api-key" in refused.json()["error"]["message"]
        assert (await http.post("/v1/ok", headers={"anthropic-version": "2023-06-01"})).status_code == 401


def test_a_failure_mid_stream_is_anthropics_error_event():
    event = anthropic_error_event(RequestError("engine gone", status=503)).decode()
    assert event == ('event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", '
                     '"message": "engine gone"}}\n\n')


class FakeServable:
    def __init__(self, name: str, kind: str) -> None:
        self.name, self.kind = name, kind


def test_claude_names_reach_the_only_text_generation_model_unless_aliases_are_given():
    one = [FakeServable("smollm2", "text_generation"), FakeServable("minilm", "embeddings")]
    two = [*one, FakeServable("qwen", "text_generation")]
    assert model_alias("claude-sonnet-4-5", None, one) == "smollm2"
    assert model_alias("gpt-4o", None, one) is None
    assert model_alias("claude-sonnet-4-5", None, two) is None  # which one would be a guess
    aliases = model_aliases(["claude-*-haiku*=smollm2", "claude-*=qwen"])
    assert aliases == (("claude-*-haiku*", "smollm2"), ("claude-*", "qwen"))
    assert model_alias("claude-3-5-haiku-latest", aliases, two) == "smollm2"
    assert model_alias("claude-opus-4", aliases, two) == "qwen"
    assert model_alias("claude-opus-4", model_aliases(["none"]), one) is None
    assert model_aliases([]) is None
    with pytest.raises(ValueError, match="PATTERN=NAME"):
        model_aliases(["claude-*"])


class FailingRun:
    """A graph run that sends one event of a Messages stream, then fails as an engine that went away does."""

    def __init__(self, first: bytes) -> None:
        self.packets = [Packet(HttpResponsePayload(first, content_type="text/event-stream", last=False), 0)]

    async def send(self, tag, value) -> None:
        pass

    def close_inputs(self) -> None:
        pass

    async def get(self, tag):
        if self.packets:
            return self.packets.pop(0)
        raise RequestError("the engine stopped; retry shortly", status=503, code="model_not_ready")

    def cancel(self, reason) -> None:
        pass

    async def aclose(self) -> None:
        pass


class OneRunGraph:
    def __init__(self, run: FailingRun) -> None:
        self._run = run

    def run(self) -> FailingRun:
        return self._run


async def test_a_messages_stream_that_fails_after_it_began_ends_with_an_error_event():
    started = b'event: message_start\ndata: {"type": "message_start"}\n\n'
    payload = HttpRequestPayload(uri="/v1/messages", body=b"", json={"stream": True}, model="m", request_id="r1")
    response = GraphResponse(OneRunGraph(FailingRun(started)), payload, time.perf_counter(),
                             RequestRecorder(ServerMetrics(Servables([]))), keepalive=None)
    app = Starlette(routes=[Route("/v1/messages", lambda request: response, methods=["POST"])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        answer = await http.post("/v1/messages")
    assert answer.status_code == 200 and answer.text.startswith(started.decode())
    assert answer.text[len(started):] == ('event: error\ndata: {"type": "error", "error": {"type": '
                                          '"overloaded_error", "message": "the engine stopped; retry shortly"}}\n\n')


def test_an_alias_to_a_model_that_is_not_served_is_a_404_naming_both():
    routes = OpenAIRoutes(Servables([]), ServerSettings(model_aliases=(("claude-*", "claude-x"),)))
    with pytest.raises(RequestError) as caught:
        routes._servable("claude-opus-4")  # the target matches the pattern too: looked up once, not again
    assert caught.value.status == 404 and "'claude-opus-4' is another name for 'claude-x'" in caught.value.message
