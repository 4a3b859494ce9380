"""The request guard alone, on a tiny app: request ids, keys, the body cap, and hostile JSON."""

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ovserve.errors import RequestError
from ovserve.server.guard import GuardSettings, RequestGuard, check_json_body


async def echo(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"{request.scope['state']['request_id']} {len(await request.body())}")


def client(**settings) -> httpx.AsyncClient:
    app = Starlette(routes=[Route("/v3/x", echo, methods=["POST"]), Route("/v2/health/ready", echo)],
                    middleware=[Middleware(RequestGuard, settings=GuardSettings(**settings))])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_keys_are_checked_on_the_api_only():
    async with client(api_keys=("k1", "k2")) as http:
        assert (await http.post("/v3/x", headers={"Authorization": "Bearer k2"})).status_code == 200
        for headers in ({}, {"Authorization": "Bearer k3"}, {"Authorization": "Basic k1"}, {"Authorization": "k1"}):
            refused = await http.post("/v3/x", headers=headers)
            assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
            assert refused.headers["www-authenticate"] == "Bearer"
        assert (await http.get("/v2/health/ready")).status_code == 200


async def test_bodies_above_the_cap_are_refused_with_or_without_a_length():
    async with client(max_request_bytes=10) as http:
        assert (await http.post("/v3/x", content=b"0123456789")).text.endswith(" 10")
        assert (await http.post("/v3/x", content=b"0123456789a")).status_code == 413

        async def chunked():
            for _ in range(3):
                yield b"0123"

        assert (await http.post("/v3/x", content=chunked())).status_code == 413


async def test_the_request_id_is_the_client_s_or_a_new_one():
    async with client() as http:
        given = await http.post("/v3/x", headers={"x-request-id": "abc"})
        assert given.headers["x-request-id"] == "abc" and given.text.startswith("abc ")
        made = await http.post("/v3/x")
        assert made.headers["x-request-id"].startswith("req-") and made.text.startswith(made.headers["x-request-id"])


def test_deep_json_and_lone_surrogates_are_refused():
    deep: list = []
    for _ in range(70):
        deep = [deep]
    with pytest.raises(RequestError, match="deeper than 64"):
        check_json_body({"messages": deep})
    with pytest.raises(RequestError, match="surrogate") as caught:
        check_json_body({"messages": [{"role": "user", "content": "a\ud800b"}]})
    assert caught.value.param == "messages"
    check_json_body({"messages": [{"role": "user", "content": "héllo 🙂"}], "n": 1})


class BrokenServables:
    """Servables whose listing fails, as a bug would: the catch-all must still answer like OpenAI."""

    ready = True

    def __iter__(self):
        raise RuntimeError("listing broke")

    def names(self):
        return []

    def get(self, name):
        return None


async def test_an_unexpected_failure_is_an_openai_shaped_500_with_the_request_id(caplog):
    from ovserve.server.app import build_app

    app = build_app(BrokenServables())  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.get("/v3/models", headers={"x-request-id": "r-1"})
    assert response.status_code == 500 and response.headers["content-type"] == "application/json"
    assert response.headers.get_list("x-request-id") == ["r-1"]
    error = response.json()["error"]
    assert error["type"] == "server_error" and error["code"] == "internal_error" and "r-1" in error["message"]
    assert "listing broke" in caplog.text  # the traceback is in the log, not in the answer
    assert "listing broke" not in response.text
