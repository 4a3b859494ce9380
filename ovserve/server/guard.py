"""What every HTTP request passes before a route: its request id, the API key, and the body size cap.

A pure ASGI middleware, so that it stays out of the per-token path: it looks at the request once, and
of the response only at its start (to add ``x-request-id``). Bodies that are JSON are then checked by
:func:`check_json_body` in the route, once parsed.
"""

from __future__ import annotations

import hmac
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ovserve.errors import RequestError
from ovserve.server.responses import error_response

#: The default cap on a request body (OpenAI's own limit for a request is about this size).
DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024
#: How deep a request's JSON may nest (objects and arrays): far beyond any real request.
MAX_JSON_DEPTH = 64
API_PREFIXES = ("/v3/", "/v1/")
#: vLLM's tokenizer, rerank and score endpoints at the server's root (lm-evaluation-harness asks for the tokenizer's
#: there), and Cohere's v2 rerank (its client's path under a base_url at the root).
ROOT_API_PATHS = ("/tokenize", "/detokenize", "/tokenizer_info", "/rerank", "/score", "/v2/rerank")


@dataclass(frozen=True)
class GuardSettings:
    """The server's access rules: API keys (none: no auth), whether ``/metrics`` needs one, the body cap."""

    api_keys: tuple[str, ...] = ()
    protect_metrics: bool = False
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES


class RequestGuard:
    """ASGI middleware: gives each request an id (the client's ``x-request-id``, else a new one, returned
    in the response's ``x-request-id``), answers 401 to API requests without a valid key (``Authorization:
    Bearer``, or ``x-api-key``) when keys are set, and 413 to bodies above the cap before reading them (or, sent in
    chunks, as soon as they pass it).
    """

    def __init__(self, app: ASGIApp, settings: GuardSettings) -> None:
        self.app = app
        self.settings = settings
        self._keys = [key.encode() for key in settings.api_keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1").strip()[:200] or f"req-{uuid.uuid4().hex}"
        scope.setdefault("state", {})["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), id_header]}
            await send(message)

        if self._keys and self._protected(scope["path"]) and not self._authorized(headers.get(b"authorization"),
                                                                                    headers.get(b"x-api-key")):
            await error_response(RequestError(
                "Incorrect or missing API key: send it as 'Authorization: Bearer <key>' (or, as Anthropic clients do, "
                "'x-api-key: <key>')", status=401, code="invalid_api_key"))(scope, receive, send_with_id)
            return
        cap = self.settings.max_request_bytes
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await error_response(RequestError("the Content-Length header is not a number",
                                                  code="invalid_request"))(scope, receive, send_with_id)
                return
            if int(length) > cap:
                await error_response(_too_large(cap))(scope, receive, send_with_id)
                return
        elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            body = await _read_capped(receive, cap)
            if body is None:
                await error_response(_too_large(cap))(scope, receive, send_with_id)
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send_with_id)

    def _protected(self, path: str) -> bool:
        return (path.startswith(API_PREFIXES) or path in ROOT_API_PATHS
                or (self.settings.protect_metrics and path == "/metrics"))

    def _authorized(self, header: bytes | None, api_key: bytes | None = None) -> bool:
        """Whether ``Authorization: Bearer KEY`` or (Anthropic's) ``x-api-key: KEY`` holds a key of the server."""
        scheme, _, bearer = (header or b"").partition(b" ")
        given = [bearer.strip()] if scheme.lower() == b"bearer" else []
        if api_key is not None:
            given.append(api_key.strip())
        matched = False
        for candidate in given:
            for key in self._keys:  # every key is compared, in constant time each
                matched |= hmac.compare_digest(candidate, key)
        return matched


def _too_large(cap: int) -> RequestError:
    return RequestError(f"the request body is larger than this server's limit of {cap} bytes "
                        f"(--max-request-bytes)", status=413, code="request_too_large")


async def _read_capped(receive: Receive, cap: int) -> bytes | None:
    """The whole body, or ``None`` as soon as it passes ``cap`` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def parse_json_body(body: bytes) -> dict[str, Any]:
    """A request body as a JSON object, checked by :func:`check_json_body`; a 400 says what is wrong."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise RequestError(f"the request body is not valid JSON: {error}", code="invalid_json") from None
    except RecursionError:
        raise RequestError("the request JSON nests too deeply", code="invalid_json") from None
    if not isinstance(data, dict):
        raise RequestError("the request body must be a JSON object", code="invalid_json")
    check_json_body(data)
    return data


def check_json_body(data: Any, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse (400) JSON nested deeper than ``max_depth``, and strings with lone UTF-16 surrogates
    (``"\\ud800"``), which no tokenizer can encode."""
    stack: list[tuple[Any, int, str]] = [(data, 1, "body")]
    while stack:
        value, depth, where = stack.pop()
        if isinstance(value, str):
            _check_text(value, where)
            continue
        if not isinstance(value, dict | list):
            continue
        if depth > max_depth:
            raise RequestError(f"the request JSON nests deeper than {max_depth} levels (at {where})",
                               code="invalid_request")
        items: Iterable[tuple[Any, Any]] = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(key, str):
                _check_text(key, where)
            if isinstance(item, str | dict | list):
                stack.append((item, depth + 1, f"{where}.{key}" if isinstance(key, str) else f"{where}[{key}]"))


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        param = where.removeprefix("body.").split(".")[0].split("[")[0] or None
        raise RequestError(f"the text at {where} holds a lone UTF-16 surrogate ({text[error.start]!r}), which is "
                           f"not valid Unicode", param=param, code="invalid_value") from None
