"""The Starlette application: OpenAI-compatible routes under ``/v3`` and ``/v1``, health under ``/v2``."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ovserve.calculators.audio.schema import form_fields
from ovserve.calculators.llm.request import parse_body
from ovserve.errors import ModelNotReadyError, RequestError
from ovserve.payloads import HttpRequestPayload
from ovserve.server.completion_store import CompletionStore
from ovserve.server.config_reload import ConfigReloader
from ovserve.server.guard import GuardSettings, RequestGuard, parse_json_body
from ovserve.server.loop_lag import watch_loop_lag
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
from ovserve.server.stored_completions import StoreCapture, StoredCompletionRoutes, request_owner
from ovserve.server.stored_responses import (
    ConversationFields,
    ResponseCapture,
    StoredResponseRoutes,
    StoreField,
    continue_conversation,
)
from ovserve.server.tokenizer_info import tokenizer_info

API_PREFIXES = ("/v3", "/v1")
#: Rerank and score paths besides /v3/rerank, /v1/rerank, /v3/score and /v1/score.
COHERE_PATHS = ("/rerank", "/score", "/v2/rerank", "/v3/v1/rerank", "/v3/v2/rerank")
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

    async def completions(self, request: Request) -> Response | GraphResponse:
        """Every model endpoint (``POST /v3/chat/completions``, ``/completions``, ``/responses``, ``/embeddings``,
        ``/rerank``, ``/score``, ``/audio/transcriptions``, ``/audio/translations``, ``/audio/speech``,
        ``/images/generations``, ``/images/edits``,
        ``/tokenize``, ``/detokenize``): run the model's graph, which answers by the path."""
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
            if request.url.path.endswith(FORM_PATHS):
                data, files = await form_body(body, request)
            else:  # a big body takes milliseconds to parse and check: off the event loop then
                data = parse_json_body(body) if len(body) < LARGE_BODY else await asyncio.to_thread(parse_json_body,
                                                                                                     body)
            servable = self._servable(data.get("model"), _kind_of(request.url.path))
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


def _kind_of(path: str) -> tuple[str, ...]:
    """The kinds of model an endpoint is for, preferred first (a request that leaves ``model`` out goes to the only
    one of the first kind served): rerank and score go to a reranker, else to an embedding model."""
    if path.endswith(FORM_PATHS):
        return ("speech2text",)
    if path.endswith("/audio/speech"):
        return ("text2speech",)
    if path.endswith(IMAGE_PATHS):
        return ("image_generation",)
    if path.endswith(("/rerank", "/score")):
        return "rerank", "embeddings"
    return ("embeddings",) if path.endswith("/embeddings") else ("text_generation",)


#: The endpoints whose bodies are multipart forms (an audio file, or an image and a mask, and text fields).
FORM_PATHS = ("/audio/transcriptions", "/audio/translations", "/images/edits")
#: The image endpoints.
IMAGE_PATHS = ("/images/generations", "/images/edits")


async def form_body(body: bytes, request: Request) -> tuple[dict[str, Any], dict[str, tuple[str, str, bytes]]]:
    """A multipart body's text fields (as :func:`~ovserve.calculators.audio.schema.form_fields` gathers them, with
    ``stream`` read as the bool it means, for the keep-alive) and its files."""
    edit = request.url.path.endswith("/images/edits")
    form = await parse_form(body, request.headers, max_files=2 if edit else 1)
    data = form_fields(form.fields)
    stream = data.get("stream")
    if isinstance(stream, str) and stream.strip().lower() in ("true", "false", "1", "0"):
        data["stream"] = stream.strip().lower() in ("true", "1")
    return data, form.files


def request_id_of(request: Request) -> str:
    """The id :class:`~ovserve.server.guard.RequestGuard` gave the request."""
    return str(request.scope.get("state", {}).get("request_id", "-"))


async def _unexpected_error(request: Request, error: Exception) -> Response:
    """Any exception a route did not handle: logged with its traceback, answered as an OpenAI 500."""
    request_id = request_id_of(request)
    log.error("%s %s %s failed", request_id, request.method, request.url.path, exc_info=error)
    failure = RequestError(f"internal error ({type(error).__name__}); request id {request_id}", status=500,
                           code="internal_error")
    # answered by Starlette's outermost error middleware, outside the guard: the id header is set here
    return error_response(failure, {"x-request-id": request_id})


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    if error.status_code == 404:
        message = f"no route for {request.method} {request.url.path}; the API is under /v3 (or /v1)"
    else:
        message = f"{error.detail} ({request.method} {request.url.path})"
    return error_response(RequestError(message, status=error.status_code))


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


def build_app(servables: Servables, settings: ServerSettings | None = None) -> Starlette:
    """The ASGI application serving ``servables`` as ``settings`` say; its lifespan watches the event
    loop's lag."""
    settings = settings or ServerSettings()
    routes_of = OpenAIRoutes(servables, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        watcher = asyncio.ensure_future(watch_loop_lag(routes_of.metrics.loop_lag))
        try:
            yield
        finally:
            watcher.cancel()

    stored = StoredCompletionRoutes(settings.store)
    stored_responses = StoredResponseRoutes(settings.store)
    routes = []
    for prefix in API_PREFIXES:
        routes += [
            Route(f"{prefix}/chat/completions", stored.list, methods=["GET"]),
            Route(f"{prefix}/chat/completions/{{completion_id}}", stored.get, methods=["GET"]),
            Route(f"{prefix}/chat/completions/{{completion_id}}", stored.update, methods=["POST"]),
            Route(f"{prefix}/chat/completions/{{completion_id}}", stored.delete, methods=["DELETE"]),
            Route(f"{prefix}/chat/completions/{{completion_id}}/messages", stored.messages, methods=["GET"]),
            Route(f"{prefix}/chat/completions", routes_of.completions, methods=["POST"]),
            Route(f"{prefix}/completions", routes_of.completions, methods=["POST"]),
            Route(f"{prefix}/embeddings", routes_of.completions, methods=["POST"]),
            Route(f"{prefix}/rerank", routes_of.completions, methods=["POST"]),
            Route(f"{prefix}/score", routes_of.completions, methods=["POST"]),
            Route(f"{prefix}/audio/transcriptions", routes_of.completions, methods=["POST"]),
            Route(f"{prefix}/audio/translations", routes_of.completions, methods=["POST"]),
            Route(f"{prefix}/audio/speech", routes_of.completions, methods=["POST"]),
            Route(f"{prefix}/images/generations", routes_of.completions, methods=["POST"]),
            Route(f"{prefix}/images/edits", routes_of.completions, methods=["POST"]),
            Route(f"{prefix}/responses", routes_of.completions, methods=["POST"]),
            Route(f"{prefix}/messages", routes_of.completions, methods=["POST"]),
            Route(f"{prefix}/messages/count_tokens", routes_of.completions, methods=["POST"]),
            Route(f"{prefix}/responses/{{response_id}}", stored_responses.get, methods=["GET"]),
            Route(f"{prefix}/responses/{{response_id}}", stored_responses.delete, methods=["DELETE"]),
            Route(f"{prefix}/responses/{{response_id}}/input_items", stored_responses.input_items, methods=["GET"]),
            Route(f"{prefix}/tokenize", routes_of.completions, methods=["POST"]),
            Route(f"{prefix}/detokenize", routes_of.completions, methods=["POST"]),
            Route(f"{prefix}/models", routes_of.list_models, methods=["GET"]),
            Route(f"{prefix}/models/{{model_id:path}}", routes_of.get_model, methods=["GET"]),
        ]
    routes += [
        # vLLM's rerank and score at the root; Cohere's clients post to v1/rerank or v2/rerank under their base_url
        # (the server's root, or /v3 as OVMS's docs set it)
        *(Route(path, routes_of.completions, methods=["POST"]) for path in COHERE_PATHS),
        Route("/tokenize", routes_of.completions, methods=["POST"]),
        Route("/detokenize", routes_of.completions, methods=["POST"]),
        Route("/tokenizer_info", routes_of.tokenizer_info, methods=["GET"]),
        Route("/v1/config", routes_of.config_status, methods=["GET"]),
        Route("/v1/config/reload", routes_of.config_reload, methods=["POST"]),
        Route("/openapi.json", routes_of.openapi, methods=["GET"]),
        Route("/metrics", routes_of.prometheus, methods=["GET"]),
        Route("/v2/health/live", routes_of.live, methods=["GET"]),
        Route("/v2/health/ready", routes_of.ready, methods=["GET"]),
        Route("/v2/models/{model_id:path}/ready", routes_of.model_ready, methods=["GET"]),
    ]
    middleware = [Middleware(RequestGuard, settings=settings.guard)]
    if settings.allowed_origins:  # outermost: a browser's preflight carries no API key
        middleware.insert(0, Middleware(CORSMiddleware, allow_origins=list(settings.allowed_origins),
                                        allow_methods=["*"],
                                        allow_headers=["*"], expose_headers=["x-request-id"]))
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware,
                    exception_handlers={HTTPException: _http_error, Exception: _unexpected_error})
    app.state.routes = routes_of
    return app
