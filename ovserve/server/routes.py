"""The handlers behind the HTTP routes (:class:`OpenAIRoutes`): admission, routing a request to its model's graph, the
stores, models, config, health and metrics; and the settings they follow (:class:`ServerSettings`)."""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from ovserve.endpoints import Endpoint, form_fields
from ovserve.errors import ModelNotReadyError, RequestError
from ovserve.payloads import HttpRequestPayload
from ovserve.request_body import parse_body
from ovserve.server.completion_store import CompletionStore
from ovserve.server.config_reload import ConfigReloader
from ovserve.server.guard import GuardSettings, parse_json_body
from ovserve.server.metrics import ServerMetrics
from ovserve.server.multipart import parse_form
from ovserve.server.openapi import openapi_document
from ovserve.server.responses import (
    CLIENT_CLOSED,
    DEFAULT_KEEPALIVE_SECONDS,
    Capture,
    GraphResponse,
    RequestRecorder,
    error_response,
    request_error_of,
)
from ovserve.server.schema import ModelCard, ModelList
from ovserve.server.servables import Servable, Servables
from ovserve.server.stored_completions import StoreCapture, request_owner
from ovserve.server.stored_responses import (
    ConversationFields,
    ResponseCapture,
    StoreField,
    continue_conversation,
)
from ovserve.server.tokenizer_info import tokenizer_info

#: Request bodies from this size on are parsed and checked in a thread.
LARGE_BODY = 256 * 1024

log = logging.getLogger("ovserve.server")

class OpenAIRoutes:
    """The endpoints, bound to the served models."""

    def __init__(self, servables: Servables, settings: ServerSettings) -> None:
        self.servables = servables
        self.settings = settings
        self.metrics = ServerMetrics(servables)
        self.recorder = RequestRecorder(self.metrics)
        self.in_flight = 0
        #: Whether the server is shutting down (set by ``ovserve serve``): readiness and new requests get 503.
        self.draining: Callable[[], bool] = lambda: False
        #: Applies ``--config`` again (set by ``ovserve serve --config``; None: nothing to reload).
        self.reloader: ConfigReloader | None = None

    def _admit(self) -> None:
        limit = self.settings.max_concurrent_requests
        if limit is not None and self.in_flight >= limit:
            self.metrics.rejected.inc()
            raise RequestError(f"this server is at its limit of {limit} concurrent requests "
                               f"(--max-concurrent-requests); retry shortly", status=429, code="too_many_requests")
        self.in_flight += 1
        self.metrics.in_flight.set(self.in_flight)

    def _release(self) -> None:
        self.in_flight -= 1
        self.metrics.in_flight.set(self.in_flight)

    def _servable(self, name: object, kinds: tuple[str, ...] = ("text_generation",)) -> Servable:
        servable = self.servables.get(name) if isinstance(name, str) else self._only(name, kinds)
        if servable is not None:
            return servable
        served = ", ".join(self.servables.names())
        target = model_alias(name, self.settings.model_aliases, self.servables) if isinstance(name, str) else None
        if target is not None:
            servable = self.servables.get(target)
            if servable is not None:
                return servable
            if target not in self.servables.loading:
                raise RequestError(f"The model '{name}' is another name for '{target}' (--model-alias), which is not "
                                   f"served; served models: {served}", status=404, param="model",
                                   code="model_not_found")
            name = target
        if isinstance(name, str) and name in self.servables.loading:
            raise ModelNotReadyError(f"the model '{name}' is still loading; retry shortly")
        if not isinstance(name, str) or not name:
            raise RequestError(f"you must provide a model parameter; served models: {served}",
                               param="model", code="missing_required_parameter")
        raise RequestError(f"The model '{name}' does not exist; served models: {served}", status=404,
                           param="model", code="model_not_found")

    def _only(self, name: object, kinds: tuple[str, ...]) -> Servable | None:
        """The model a request that leaves ``model`` out (or sends null) is for: the only one served of the first of
        ``kinds`` that is served at all."""
        if name is not None:
            return None
        for kind in kinds:
            served = [servable for servable in self.servables if servable.kind == kind]
            if served:
                return served[0] if len(served) == 1 else None
        return None

    async def completions(self, request: Request, endpoint: Endpoint) -> Response | GraphResponse:
        """A model endpoint (``POST /v3/chat/completions``, ``/embeddings``, ..., as the calculator packages declare
        them): read its body, find its model, and run the model's graph, which answers by the path."""
        started = time.perf_counter()
        request_id = request_id_of(request)
        try:
            body = await asyncio.wait_for(request.body(), self.settings.body_timeout)
        except ClientDisconnect:  # gone while sending its body: one line, no traceback
            self.recorder.record(request_id, "-", CLIENT_CLOSED, started, {"error": "the client went away while "
                                                                                    "sending its body"})
            return Response(status_code=CLIENT_CLOSED)
        except asyncio.TimeoutError:  # not the builtin TimeoutError on Python 3.10
            error = RequestError(f"the request body did not arrive within {self.settings.body_timeout:g} s "
                                 f"(--body-timeout)", status=408, code="request_timeout")
            self.recorder.record(request_id, "-", error.status, started, {"error": error.message})
            return error_response(error)
        model = "-"
        files: dict[str, tuple[str, str, bytes]] = {}
        try:
            if endpoint.form:
                data, files = await form_body(body, request, endpoint)
            else:  # a big body takes milliseconds to parse and check: off the event loop then
                data = parse_json_body(body) if len(body) < LARGE_BODY else await asyncio.to_thread(parse_json_body,
                                                                                                     body)
            servable = self._servable(data.get("model"), endpoint.kinds)
            data["model"] = model = servable.name  # only served names become metric labels
            if not servable.ready:
                raise ModelNotReadyError(f"the model '{servable.name}' is not ready (its engine is restarting); "
                                         f"retry shortly")
            if self.draining():
                raise ModelNotReadyError("the server is shutting down; retry on another replica")
            self._admit()
        except RequestError as error:
            self.recorder.record(request_id, model, error.status, started, {"error": error.message})
            return error_response(error)
        servable.acquire()  # this version stays loaded until the request ends, even if a reload replaces it

        def release() -> None:
            servable.release()
            self._release()

        try:
            capture = await self._capture(request, data)
        except BaseException as error:  # whatever it is, the request leaves: its counts go with it
            release()
            if not isinstance(error, Exception):
                raise  # cancelled (a forced shutdown)
            failure = request_error_of(error)
            if not isinstance(error, RequestError):
                log.error("%s: the store could not be read: %r", request_id, error)
            self.recorder.record(request_id, model, failure.status, started, {"error": failure.message})
            return error_response(failure)
        payload = HttpRequestPayload(uri=request.url.path, body=b"" if files else body, json=data,
                                     model=servable.name, method=request.method, headers=dict(request.headers),
                                     request_id=request_id, files=files)
        return GraphResponse(servable.graph, payload, started, self.recorder, on_done=release,
                             keepalive=self.settings.keepalive, deadline=self.settings.request_timeout,
                             tags=servable.tags, capture=capture)

    async def _capture(self, request: Request, data: dict[str, Any]) -> Capture | None:
        """What keeps the answer: a chat completion with ``store: true``, a Responses answer unless ``store`` is
        false (continuing from ``previous_response_id``); refused where nothing can keep it. ``stream`` is set
        to the bool the request schema reads it as, for the keep-alive and the capture."""
        path = request.url.path
        if not path.endswith(("/completions", "/responses")):
            return None
        responses = path.endswith("/responses")
        fields = parse_body(ConversationFields if responses else StoreField, data)
        if fields.stream is not None:
            data["stream"] = fields.stream
        store = self.settings.store
        if isinstance(fields, ConversationFields):
            own = await continue_conversation(store, request_owner(request), data, fields)
            if store is None and fields.store is not True:
                data["store"] = False  # OpenAI's default is true; with no store the answer says it was not kept
            elif fields.store is not False:
                if store is None:
                    raise RequestError("'store' is true, but this server keeps no responses (started with "
                                       "--store-path none)", param="store", code="unsupported_parameter")
                return ResponseCapture(store, request_owner(request), data, own, fields.previous_response_id)
            return None
        if fields.store is not True or not path.endswith("/chat/completions"):
            return None
        if store is None:
            raise RequestError("'store' is true, but this server keeps no completions (started with --store-path "
                               "none)", param="store", code="unsupported_parameter")
        return StoreCapture(store, request_owner(request), data)

    async def tokenizer_info(self, request: Request) -> Response:
        """vLLM's ``GET /tokenizer_info`` (``?model=`` or the only text generation model)."""
        try:
            servable = self._servable(request.query_params.get("model"))
            return JSONResponse(tokenizer_info(servable))
        except RequestError as error:
            return error_response(error)

    async def openapi(self, request: Request) -> Response:
        """``GET /openapi.json``, with the models served now."""
        kinds: dict[str, list[str]] = {}
        for servable in self.servables:
            kinds.setdefault(servable.kind, []).append(servable.name)
        return JSONResponse(openapi_document(kinds))

    async def list_models(self, request: Request) -> Response:
        cards = [ModelCard(id=s.name, created=s.created) for s in self.servables]
        return Response(ModelList(data=cards).model_dump_json(), media_type="application/json")

    async def get_model(self, request: Request) -> Response:
        try:
            servable = self._servable(request.path_params["model_id"])
        except RequestError as error:
            return error_response(error)
        return Response(ModelCard(id=servable.name, created=servable.created).model_dump_json(),
                        media_type="application/json")

    async def config_status(self, request: Request) -> Response:
        """OVMS's ``GET /v1/config``: every model's versions and their states (``AVAILABLE``, ``UNLOADING``
        while a replaced or removed version finishes its requests, ``END``, ``LOADING`` with the error of a
        reload that failed)."""
        return JSONResponse(self._status())

    def _status(self) -> dict[str, Any]:
        return {name: {"model_version_status": [v.to_dict() for v in versions]}
                for name, versions in self.servables.status(self.draining()).items()}

    async def config_reload(self, request: Request) -> Response:
        """OVMS's ``POST /v1/config/reload``: apply config.json and its graphs now. 201 with the status when
        something changed, 200 when nothing did; a failed reload is a 500 that names the file and line."""
        if self.reloader is None:
            return error_response(RequestError("this server was not started with --config: there is no config to "
                                               "reload", code="no_config"))
        if self.draining():
            return error_response(ModelNotReadyError("the server is shutting down; nothing is reloaded"))
        outcome = await self.reloader.reload()
        if outcome.failed:
            message = "; ".join(f"{name}: {error}" if name else error for name, error in outcome.failed.items())
            return error_response(RequestError(f"config reload failed: {message}", status=500,
                                               code="config_reload_failed"))
        return JSONResponse(self._status(), status_code=201 if outcome.changed else 200)

    async def prometheus(self, request: Request) -> Response:
        return Response(self.metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def live(self, request: Request) -> Response:
        return Response(status_code=200)

    async def ready(self, request: Request) -> Response:
        return Response(status_code=200 if self.servables.ready and not self.draining() else 503)

    async def model_ready(self, request: Request) -> Response:
        servable = self.servables.get(request.path_params["model_id"])
        if servable is None:
            return Response(status_code=404)
        return Response(status_code=200 if servable.ready else 503)



async def form_body(body: bytes, request: Request,
                    endpoint: Endpoint) -> tuple[dict[str, Any], dict[str, tuple[str, str, bytes]]]:
    """A multipart body's text fields (with ``stream`` read as the bool it means, for the keep-alive) and its
    files."""
    form = await parse_form(body, request.headers, endpoint.max_files)
    data = form_fields(form.fields, endpoint.list_fields)
    stream = data.get("stream")
    if isinstance(stream, str) and stream.strip().lower() in ("true", "false", "1", "0"):
        data["stream"] = stream.strip().lower() in ("true", "1")
    return data, form.files


def request_id_of(request: Request) -> str:
    """The id :class:`~ovserve.server.guard.RequestGuard` gave the request."""
    return str(request.scope.get("state", {}).get("request_id", "-"))



@dataclass(frozen=True)
class ServerSettings:
    """How the HTTP server treats requests (``ovserve serve``'s flags)."""

    #: Request ids, API keys, the body cap.
    guard: GuardSettings = field(default_factory=GuardSettings)
    #: Completion requests above this many at once get 429 (None: no limit).
    max_concurrent_requests: int | None = None
    #: A stream silent this long gets an SSE comment line (None: never).
    keepalive: float | None = DEFAULT_KEEPALIVE_SECONDS
    #: A completion request that takes longer is ended: 504, or an error event (None: no limit).
    request_timeout: float | None = None
    #: Browser origins allowed to call the API (CORS); none: CORS off.
    allowed_origins: tuple[str, ...] = ()
    #: Where ``store: true`` chat completions are kept (None: not kept, and such requests are refused).
    store: CompletionStore | None = None
    #: A request whose body has not all arrived after this many seconds gets 408 (None: no limit).
    body_timeout: float | None = 30.0
    #: Other names for served models, as (fnmatch pattern, served name), first match wins (``--model-alias``);
    #: None: :data:`DEFAULT_ALIAS` (``claude-*`` names reach the only text generation model, if one is the only).
    model_aliases: tuple[tuple[str, str], ...] | None = None



#: The alias pattern that reaches the only text generation model when no --model-alias is given (Anthropic clients
#: such as Claude Code ask for models by Claude names).
DEFAULT_ALIAS = "claude-*"



def model_alias(name: str, aliases: tuple[tuple[str, str], ...] | None, servables: Servables) -> str | None:
    """The served name ``name`` is another name for, or ``None``."""
    if aliases is not None:
        return next((target for pattern, target in aliases if fnmatch.fnmatchcase(name, pattern)), None)
    if not fnmatch.fnmatchcase(name, DEFAULT_ALIAS):
        return None
    generators = [servable.name for servable in servables if servable.kind == "text_generation"]
    return generators[0] if len(generators) == 1 else None
