"""The Starlette application: OpenAI-compatible routes under ``/v3`` and ``/v1``, health under ``/v2``; the handlers
are in :mod:`ovserve.server.routes`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ovserve.endpoints import Endpoint, builtin_endpoints
from ovserve.errors import RequestError
from ovserve.server.completion_store import CompletionStore
from ovserve.server.guard import RequestGuard
from ovserve.server.loop_lag import watch_loop_lag
from ovserve.server.responses import (
    error_response,
)
from ovserve.server.routes import OpenAIRoutes, ServerSettings, request_id_of
from ovserve.server.servables import Servables
from ovserve.server.stored_completions import StoredCompletionRoutes
from ovserve.server.stored_responses import (
    StoredResponseRoutes,
)

API_PREFIXES = ("/v3", "/v1")

log = logging.getLogger("ovserve.server")



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

    endpoints = builtin_endpoints()
    routes = [route for prefix in API_PREFIXES for route in _api_routes(prefix, routes_of, endpoints, settings.store)]
    routes += [_graph_route(path, endpoint, routes_of) for endpoint in endpoints for path in endpoint.also_at]
    routes += _root_routes(routes_of)
    middleware = [Middleware(RequestGuard, settings=settings.guard)]
    if settings.allowed_origins:  # outermost: a browser's preflight carries no API key
        middleware.insert(0, Middleware(CORSMiddleware, allow_origins=list(settings.allowed_origins),
                                        allow_methods=["*"],
                                        allow_headers=["*"], expose_headers=["x-request-id"]))
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware,
                    exception_handlers={HTTPException: _http_error, Exception: _unexpected_error})
    app.state.routes = routes_of
    return app


def _graph_route(path: str, endpoint: Endpoint, routes_of: OpenAIRoutes) -> Route:
    """``POST path``: the endpoint, answered by its model's graph."""
    async def answer(request: Request) -> Response:
        return await routes_of.completions(request, endpoint)

    return Route(path, answer, methods=["POST"])


def _api_routes(prefix: str, routes_of: OpenAIRoutes, endpoints: tuple[Endpoint, ...],
                store: CompletionStore | None) -> list[Route]:
    """The routes under one API prefix (``/v3``, ``/v1``): every model endpoint, the stored chat completions and
    responses, and the model list."""
    stored = StoredCompletionRoutes(store)
    responses = StoredResponseRoutes(store)
    return [
        Route(f"{prefix}/chat/completions", stored.list, methods=["GET"]),
        Route(f"{prefix}/chat/completions/{{completion_id}}", stored.get, methods=["GET"]),
        Route(f"{prefix}/chat/completions/{{completion_id}}", stored.update, methods=["POST"]),
        Route(f"{prefix}/chat/completions/{{completion_id}}", stored.delete, methods=["DELETE"]),
        Route(f"{prefix}/chat/completions/{{completion_id}}/messages", stored.messages, methods=["GET"]),
        *(_graph_route(f"{prefix}{endpoint.path}", endpoint, routes_of) for endpoint in endpoints),
        Route(f"{prefix}/responses/{{response_id}}", responses.get, methods=["GET"]),
        Route(f"{prefix}/responses/{{response_id}}", responses.delete, methods=["DELETE"]),
        Route(f"{prefix}/responses/{{response_id}}/input_items", responses.input_items, methods=["GET"]),
        Route(f"{prefix}/models", routes_of.list_models, methods=["GET"]),
        Route(f"{prefix}/models/{{model_id:path}}", routes_of.get_model, methods=["GET"]),
    ]


def _root_routes(routes_of: OpenAIRoutes) -> list[Route]:
    """The routes outside the API prefixes, other than model endpoints: config, OpenAPI, metrics and health."""
    return [
        Route("/tokenizer_info", routes_of.tokenizer_info, methods=["GET"]),
        Route("/v1/config", routes_of.config_status, methods=["GET"]),
        Route("/v1/config/reload", routes_of.config_reload, methods=["POST"]),
        Route("/openapi.json", routes_of.openapi, methods=["GET"]),
        Route("/metrics", routes_of.prometheus, methods=["GET"]),
        Route("/v2/health/live", routes_of.live, methods=["GET"]),
        Route("/v2/health/ready", routes_of.ready, methods=["GET"]),
        Route("/v2/models/{model_id:path}/ready", routes_of.model_ready, methods=["GET"]),
    ]
