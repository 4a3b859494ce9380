"""Turning graph runs into HTTP responses: OpenAI error bodies, and streaming a run's output."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from ovserve.errors import RequestError, ServerShuttingDownError, anthropic_error
from ovserve.framework.errors import CalculatorError, RunCancelledError
from ovserve.framework.graph import Graph
from ovserve.payloads import REQUEST_TAG, RESPONSE_TAG, HttpRequestPayload, HttpResponsePayload
from ovserve.server.metrics import ServerMetrics

if TYPE_CHECKING:
    from ovserve.server.completion_store import CompletionStore

log = logging.getLogger("ovserve.requests")


class Capture(Protocol):
    """Keeps an answer that ended well (``store``): the graph's last payload carries it whole (``answer``)."""

    #: Where the answer is kept: ``finish`` runs on its thread.
    store: CompletionStore

    def finish(self, answer: Mapping[str, Any]) -> None:
        """Called on the store's thread once the response was sent in full: keep ``answer``."""


#: Seconds of silence after which a stream gets an SSE comment line (``ovserve serve --sse-keepalive``).
DEFAULT_KEEPALIVE_SECONDS = 15.0

#: What a client that went away is logged as (nginx's convention).
CLIENT_CLOSED = 499


class ResponsesEvents:
    """What a Responses API stream has sent: how many events (the next ``sequence_number``) and the response
    ``response.created`` carried, so that a failure ends it with ``response.failed`` (or ``error`` before it)."""

    def __init__(self) -> None:
        self.events = 0
        self.created: dict[str, Any] | None = None

    def saw(self, body: bytes) -> None:
        for line in body.split(b"\n"):
            if not line.startswith(b"data: "):
                continue
            self.events += 1
            if self.created is None and b'"response.created"' in line:
                self.created = json.loads(line[6:]).get("response")

    def failure(self, failure: RequestError) -> bytes:
        code = failure.code or ("server_error" if failure.status >= 500 else "invalid_request")
        if self.created is None:
            event: dict[str, Any] = {"type": "error", "sequence_number": self.events, "code": code,
                                     "message": failure.message, "param": failure.param}
        else:
            response = {**self.created, "status": "failed", "error": {"code": code, "message": failure.message}}
            event = {"type": "response.failed", "sequence_number": self.events, "response": response}
        return f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n".encode()


#: The Anthropic Messages API's paths: their errors take Anthropic's shape.
MESSAGES_PATHS = frozenset(f"{prefix}/messages{end}" for prefix in ("/v1", "/v3") for end in ("", "/count_tokens"))


class ErrorResponse(JSONResponse):
    """An error body in the shape of the API its path belongs to: Anthropic's on the Messages API's paths (known
    only when it is sent, from the ASGI scope), OpenAI's everywhere else."""

    def __init__(self, error: RequestError, headers: dict[str, str]) -> None:
        super().__init__(error.to_dict(), status_code=error.status, headers=headers)
        self.error = error
        self.extra_headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("path") in MESSAGES_PATHS:
            request_id = scope.get("state", {}).get("request_id")
            answer = JSONResponse(anthropic_error(self.error, request_id), self.status_code, self.extra_headers)
            await answer(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def anthropic_error_event(error: RequestError) -> bytes:
    """A failure that ends a begun Messages API stream: Anthropic's ``error`` event."""
    return b"event: error\ndata: " + json.dumps(anthropic_error(error), ensure_ascii=False).encode() + b"\n\n"


def error_response(error: RequestError, headers: dict[str, str] | None = None) -> JSONResponse:
    """The error body (an ASGI app; see :class:`ErrorResponse`); refusals a client should retry (429, 503) say
    when, in ``Retry-After``, and a 401 says how to authenticate."""
    headers = dict(headers or {})
    if error.status in (429, 503):
        headers["retry-after"] = "1"
    if error.status == 401:
        headers["www-authenticate"] = "Bearer"
    return ErrorResponse(error, headers)


class RequestRecorder:
    """Writes the one log line per request and updates the metrics."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics

    def record(self, request_id: str, model: str, status: int, started: float, facts: dict[str, Any],
               first_chunk: float | None = None) -> None:
        elapsed = time.perf_counter() - started
        # a stream that began (200) and then failed: the status the client got, and what ended it
        cut = f" ended_with={status} chunks={facts['chunks']}" if "chunks" in facts else ""
        log.info("%s model=%s status=%d prompt_tokens=%s completion_tokens=%s time=%.3fs%s%s",
                 facts.get("id", request_id), model, facts.get("sent_status", status), facts.get("prompt_tokens", "-"),
                 facts.get("completion_tokens", "-"), elapsed, cut,
                 f" error={facts['error']!r}" if "error" in facts else "")
        self.metrics.observe(model, status, elapsed, first_chunk, facts.get("prompt_tokens"),
                             facts.get("completion_tokens"))


def request_error_of(error: BaseException) -> RequestError:
    """The client-facing error for a failed run: the calculator's own RequestError, or a 500."""
    cause = error.cause if isinstance(error, CalculatorError) else error
    if isinstance(cause, RequestError):
        return cause
    where = f" in node '{error.node}'" if isinstance(error, CalculatorError) else ""
    return RequestError(f"internal error{where}: {type(cause).__name__}: {cause}", status=500, code="internal_error")


def _error_of(payload: HttpResponsePayload) -> RequestError:
    """A graph's error response (an OpenAI error body, or any text) as a RequestError."""
    try:
        error = json.loads(payload.body)["error"]
        return RequestError(str(error["message"]), status=payload.status, param=error.get("param"),
                            code=error.get("code"))
    except (ValueError, KeyError, TypeError):
        return RequestError(payload.body.decode(errors="replace"), status=payload.status)


class GraphResponse:
    """An ASGI response that runs the graph for one request and sends what it produces.

    The first packet decides the status and content type; a streamed response (``last=False``) is
    sent chunk by chunk. A client that disconnects cancels the run at once, which aborts its
    generation in the engine."""

    def __init__(self, graph: Graph, payload: HttpRequestPayload, started: float,
                 recorder: RequestRecorder, on_done: Callable[[], None] | None = None,
                 keepalive: float | None = DEFAULT_KEEPALIVE_SECONDS, deadline: float | None = None,
                 tags: tuple[str, str] = (REQUEST_TAG, RESPONSE_TAG), capture: Capture | None = None) -> None:
        self.on_done = on_done
        #: Keeps a ``store: true`` completion if it ended well: the answer object of the graph's last payload.
        self.capture = capture
        self.answer: Mapping[str, Any] | None = None
        #: The graph's request input and response output tags.
        self.request_tag, self.response_tag = tags
        #: A stream silent this long gets an SSE comment line, so that proxies do not cut it (None: never).
        self.keepalive = keepalive if payload.json.get("stream") is True else None
        self.headers_sent = False
        self.last_send = started
        #: One sender at a time (the response and its keep-alive task), and nothing after the last body.
        self._sending = asyncio.Lock()
        self.completed = False
        self.graph = graph
        self.payload = payload
        self.started = started
        self.recorder = recorder
        self.status = 0
        self.facts: dict[str, Any] = {}
        self.first_chunk: float | None = None
        #: Seconds the whole response may take (None: no limit); past it the run is cancelled.
        self.deadline = deadline
        self.expired = False
        #: Body chunks sent (keep-alive comments included).
        self.chunks = 0
        #: A Responses API stream's events so far, for an error that ends it the Responses API's way.
        streamed_responses = payload.json.get("stream") is True and payload.uri.endswith("/responses")
        self.responses_events = ResponsesEvents() if streamed_responses else None
        #: An Anthropic Messages API stream: a failure ends it with an ``error`` event.
        self.messages_stream = payload.json.get("stream") is True and payload.uri in MESSAGES_PATHS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        run = self.graph.run()
        watcher = asyncio.ensure_future(self._watch_disconnect(receive, run))
        keeper = asyncio.ensure_future(self._keep_alive(send)) if self.keepalive else None
        timer = asyncio.get_running_loop().call_later(self.deadline, self._expire, run) if self.deadline else None
        try:
            await run.send(self.request_tag, self.payload)
            run.close_inputs()
            try:
                packet = await run.get(self.response_tag)
            except RunCancelledError:
                if self.expired:
                    await self._send_error(scope, receive, send, self._timeout(), None)
                else:
                    self.status = CLIENT_CLOSED
                return
            except Exception as error:  # every failure becomes an OpenAI error body
                await self._send_error(scope, receive, send, request_error_of(error), error)
                return
            if packet is None:
                await self._send_error(scope, receive, send, RequestError(
                    "the graph ended without a response", status=500, code="internal_error"), None)
                return
            if self.headers_sent and packet.value.status != 200:  # kept alive, then refused: say so in-band
                await self._send_error(scope, receive, send, _error_of(packet.value), None)
                return
            await self._stream(send, run, packet.value)
        except asyncio.CancelledError:  # uvicorn's shutdown timeout passed: tell the client, end this task quietly
            await self._cut_off(scope, receive, send)
        finally:
            if (self.capture is not None and self.answer is not None and self.status == 200 and self.completed
                    and not self.expired):  # kept before any await: a read asked after the answer sees it
                self._keep(self.capture, self.answer)
            if timer is not None:
                timer.cancel()
            if keeper is not None:
                keeper.cancel()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):  # cancelled again while closing (a second Ctrl-C)
                await run.aclose()
            self.recorder.record(self.payload.request_id, self.payload.model, self.status, self.started,
                                 self.facts, self.first_chunk)
            if self.on_done is not None:
                self.on_done()

    def _keep(self, capture: Capture, answer: Mapping[str, Any]) -> None:
        """Keep the answer, on the store's thread (never on the event loop)."""
        request_id = self.payload.request_id

        def kept(done: asyncio.Future[None]) -> None:
            if not done.cancelled() and done.exception() is not None:  # the client has its answer: logged, not sent
                log.error("%s: the answer could not be stored: %r", request_id, done.exception())

        capture.store.run(capture.finish, answer).add_done_callback(kept)

    def _expire(self, run: Any) -> None:
        self.expired = True
        run.cancel("the request timed out")

    def _timeout(self) -> RequestError:
        return RequestError(f"the request took longer than this server's limit of {self.deadline:g} s "
                            f"(--request-timeout)", status=504, code="request_timeout")

    async def _cut_off(self, scope: Scope, receive: Receive, send: Send) -> None:
        """End a response the server can no longer finish: an error event and ``[DONE]`` once streaming,
        else a 503. Best effort: the client may be gone."""
        failure = ServerShuttingDownError("the server is shutting down and could not finish this request in time; "
                                          "retry")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._send_error(scope, receive, send, failure, None), 2)

    async def _start(self, send: Send, status: int, content_type: str) -> None:
        self.headers_sent = True
        self.status = status
        headers = [(b"content-type", content_type.encode())]
        if content_type.startswith("text/event-stream"):
            headers += [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
        await self._send(send, {"type": "http.response.start", "status": status, "headers": headers})

    async def _keep_alive(self, send: Send) -> None:
        """While a stream waits (in the queue, in prefill, or for tool calls that go out whole), send a
        comment line each ``keepalive`` seconds of silence; the headers go first if they have not yet."""
        assert self.keepalive is not None
        while True:
            await asyncio.sleep(self.keepalive - (time.perf_counter() - self.last_send))
            if time.perf_counter() - self.last_send < self.keepalive or self._sending.locked():
                continue  # something was sent meanwhile, or is being sent (a slow client): no comment needed
            if self.completed:
                return
            if not self.headers_sent:
                await self._start(send, 200, "text/event-stream")
            self.last_send = time.perf_counter()
            await self._send(send, {"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True})

    async def _send(self, send: Send, message: dict[str, Any]) -> None:
        async with self._sending:
            if self.completed:
                return
            if message["type"] == "http.response.body":
                self.chunks += 1
                if self.responses_events is not None:
                    self.responses_events.saw(message.get("body", b""))
                if not message.get("more_body", False):
                    self.completed = True
            await send(message)

    async def _stream(self, send: Send, run: Any, first: HttpResponsePayload) -> None:
        if not self.headers_sent:
            await self._start(send, first.status, first.content_type)
        self.first_chunk = time.perf_counter() - self.started
        between_chunks = (self.recorder.metrics.inter_chunk.labels(self.payload.model)
                          if first.content_type.startswith("text/event-stream") else None)
        payload = first
        last_chunk = time.perf_counter()
        try:
            while True:
                if payload.log:
                    self.facts.update(payload.log)
                if payload.answer is not None:
                    self.answer = payload.answer
                now = time.perf_counter()
                if between_chunks is not None and payload is not first:
                    between_chunks.observe(now - last_chunk)
                self.last_send = last_chunk = now
                await self._send(send, {"type": "http.response.body", "body": payload.body,
                                        "more_body": not payload.last})
                if payload.last:
                    return
                try:
                    packet = await run.get(self.response_tag)
                except RunCancelledError:
                    if self.expired:
                        await self._send_in_band(send, self._timeout(), None)
                    else:
                        self.status = CLIENT_CLOSED
                    return
                except Exception as error:  # the stream has begun: report the failure in-band
                    await self._send_in_band(send, request_error_of(error), error)
                    return
                if packet is None:
                    await self._send(send, {"type": "http.response.body", "body": b"", "more_body": False})
                    return
                payload = packet.value
        except OSError:
            self.status = CLIENT_CLOSED  # the client went away while we were writing
            run.cancel("the client disconnected")

    async def _send_error(self, scope: Scope, receive: Receive, send: Send, failure: RequestError,
                          cause: BaseException | None) -> None:
        """The failure as an OpenAI error response, or in-band once the response has begun."""
        if self.headers_sent:
            await self._send_in_band(send, failure, cause)
            return
        self.facts["error"] = failure.message
        self._log_failure(failure, cause)
        self.status = failure.status
        self.completed = True  # the keep-alive task sends nothing more
        await error_response(failure)(scope, receive, send)

    async def _send_in_band(self, send: Send, failure: RequestError, cause: BaseException | None) -> None:
        """End a begun stream with the failure: as the Responses API's ``response.failed`` (or ``error`` before
        ``response.created``) on a Responses stream; Anthropic's ``error`` event on a Messages stream; else as a
        chat-style error event, then ``data: [DONE]``."""
        self.facts["error"] = failure.message
        # the metrics count the failure; the log line says the client got a 200 and how many chunks before it
        self.facts.update(sent_status=self.status, chunks=self.chunks)
        self.status = failure.status
        self._log_failure(failure, cause)
        if self.responses_events is not None:
            body = self.responses_events.failure(failure)
        elif self.messages_stream:
            body = anthropic_error_event(failure)
        else:
            body = b"data: " + json.dumps(failure.to_dict()).encode() + b"\n\ndata: [DONE]\n\n"
        await self._send(send, {"type": "http.response.body", "body": body, "more_body": False})

    @staticmethod
    def _log_failure(failure: RequestError, cause: BaseException | None) -> None:
        expected = isinstance(cause.cause if isinstance(cause, CalculatorError) else cause, RequestError)
        if failure.status >= 500 and cause is not None and not expected:  # a traceback for what was not foreseen
            log.error("request failed: %s", failure.message, exc_info=cause)

    @staticmethod
    async def _watch_disconnect(receive: Receive, run: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                run.cancel("the client disconnected")
                return
