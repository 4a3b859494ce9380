"""Turning graph runs into HTTP responses: OpenAI error bodies, and streaming a run's output."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from ovserve.errors import RequestError
from ovserve.framework.errors import CalculatorError, RunCancelledError
from ovserve.framework.runtime import Graph
from ovserve.payloads import REQUEST_TAG, RESPONSE_TAG, HttpRequestPayload, HttpResponsePayload
from ovserve.server.metrics import ServerMetrics

log = logging.getLogger("ovserve.requests")

#: What a client that went away is logged as (nginx's convention).
CLIENT_CLOSED = 499


def error_response(error: RequestError) -> JSONResponse:
    """The OpenAI error body; refusals a client should retry (429, 503) say when, in ``Retry-After``."""
    headers = {"retry-after": "1"} if error.status in (429, 503) else None
    return JSONResponse(error.to_dict(), status_code=error.status, headers=headers)


class RequestRecorder:
    """Writes the one log line per request and updates the metrics."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics

    def record(self, request_id: str, model: str, status: int, started: float, facts: dict[str, Any],
               first_chunk: float | None = None) -> None:
        elapsed = time.perf_counter() - started
        log.info("%s model=%s status=%d prompt_tokens=%s completion_tokens=%s time=%.3fs%s",
                 facts.get("id", request_id), model, status, facts.get("prompt_tokens", "-"),
                 facts.get("completion_tokens", "-"), elapsed,
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


class GraphResponse:
    """An ASGI response that runs the graph for one request and sends what it produces.

    The first packet decides the status and content type; a streamed response (``last=False``) is
    sent chunk by chunk. A client that disconnects cancels the run at once, which aborts its
    generation in the engine."""

    def __init__(self, graph: Graph, payload: HttpRequestPayload, started: float,
                 recorder: RequestRecorder, on_done: Callable[[], None] | None = None) -> None:
        self.on_done = on_done
        self.graph = graph
        self.payload = payload
        self.started = started
        self.recorder = recorder
        self.status = 0
        self.facts: dict[str, Any] = {}
        self.first_chunk: float | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        run = self.graph.run()
        watcher = asyncio.ensure_future(self._watch_disconnect(receive, run))
        try:
            await run.send(REQUEST_TAG, self.payload)
            run.close_inputs()
            try:
                packet = await run.get(RESPONSE_TAG)
            except RunCancelledError:
                self.status = CLIENT_CLOSED
                return
            except Exception as error:  # every failure becomes an OpenAI error body
                await self._send_error(scope, receive, send, request_error_of(error), error)
                return
            if packet is None:
                await self._send_error(scope, receive, send, RequestError(
                    "the graph ended without a response", status=500, code="internal_error"), None)
                return
            await self._stream(send, run, packet.value)
        finally:
            watcher.cancel()
            await run.aclose()
            self.recorder.record(self.payload.request_id, self.payload.model, self.status, self.started,
                                 self.facts, self.first_chunk)
            if self.on_done is not None:
                self.on_done()

    async def _stream(self, send: Send, run: Any, first: HttpResponsePayload) -> None:
        self.status = first.status
        headers = [(b"content-type", first.content_type.encode())]
        if first.content_type.startswith("text/event-stream"):
            headers += [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
        await send({"type": "http.response.start", "status": first.status, "headers": headers})
        self.first_chunk = time.perf_counter() - self.started
        payload = first
        try:
            while True:
                if payload.log:
                    self.facts.update(payload.log)
                await send({"type": "http.response.body", "body": payload.body, "more_body": not payload.last})
                if payload.last:
                    return
                try:
                    packet = await run.get(RESPONSE_TAG)
                except RunCancelledError:
                    self.status = CLIENT_CLOSED
                    return
                except Exception as error:  # the stream has begun: report the failure in-band
                    failure = request_error_of(error)
                    self._log_failure(failure, error)
                    self.facts["error"] = failure.message
                    body = b"data: " + json.dumps(failure.to_dict()).encode() + b"\n\ndata: [DONE]\n\n"
                    await send({"type": "http.response.body", "body": body, "more_body": False})
                    return
                if packet is None:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    return
                payload = packet.value
        except OSError:
            self.status = CLIENT_CLOSED  # the client went away while we were writing
            run.cancel("the client disconnected")

    async def _send_error(self, scope: Scope, receive: Receive, send: Send, failure: RequestError,
                          cause: BaseException | None) -> None:
        self.status = failure.status
        self.facts["error"] = failure.message
        self._log_failure(failure, cause)
        await error_response(failure)(scope, receive, send)

    @staticmethod
    def _log_failure(failure: RequestError, cause: BaseException | None) -> None:
        if failure.status >= 500 and cause is not None:
            log.error("request failed: %s", failure.message, exc_info=cause)

    @staticmethod
    async def _watch_disconnect(receive: Receive, run: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                run.cancel("the client disconnected")
                return
