"""The Starlette application: OpenAI-compatible routes under ``/v3`` and ``/v1``, health under ``/v2``."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ovserve.errors import ModelNotReadyError, RequestError
from ovserve.payloads import HttpRequestPayload
from ovserve.server.loop_lag import watch_loop_lag
from ovserve.server.metrics import ServerMetrics
from ovserve.server.responses import GraphResponse, RequestRecorder, error_response
from ovserve.server.schema import ModelCard, ModelList
from ovserve.server.servables import Servable, Servables

API_PREFIXES = ("/v3", "/v1")
_request_ids = itertools.count(1)


class OpenAIRoutes:
    """The endpoints, bound to the served models."""

    def __init__(self, servables: Servables) -> None:
        self.servables = servables
        self.metrics = ServerMetrics(servables)
        self.recorder = RequestRecorder(self.metrics)

    def _servable(self, name: object) -> Servable:
        servable = self.servables.get(name) if isinstance(name, str) else None
        if servable is not None:
            return servable
        served = ", ".join(self.servables.names())
        if not isinstance(name, str) or not name:
            raise RequestError(f"you must provide a model parameter; served models: {served}",
                               param="model", code="missing_required_parameter")
        raise RequestError(f"The model '{name}' does not exist; served models: {served}", status=404,
                           param="model", code="model_not_found")

    async def completions(self, request: Request) -> Response | GraphResponse:
        """``POST /v3/chat/completions`` and ``POST /v3/completions``: run the model's graph."""
        started = time.perf_counter()
        request_id = f"req-{next(_request_ids)}"
        body = await request.body()
        model = "-"
        try:
            try:
                data = json.loads(body)
            except (ValueError, UnicodeDecodeError) as error:
                raise RequestError(f"the request body is not valid JSON: {error}", code="invalid_json") from None
            if not isinstance(data, dict):
                raise RequestError("the request body must be a JSON object", code="invalid_json")
            servable = self._servable(data.get("model"))
            model = servable.name  # only served names become metric labels
            if not servable.ready:
                raise ModelNotReadyError(f"the model '{servable.name}' is not ready (its engine is restarting); "
                                         f"retry shortly")
        except RequestError as error:
            self.recorder.record(request_id, model, error.status, started, {"error": error.message})
            return error_response(error)
        payload = HttpRequestPayload(uri=request.url.path, body=body, json=data, model=servable.name,
                                     method=request.method, headers=dict(request.headers), request_id=request_id)
        return GraphResponse(servable.graph, payload, started, self.recorder)

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

    async def prometheus(self, request: Request) -> Response:
        return Response(self.metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def live(self, request: Request) -> Response:
        return Response(status_code=200)

    async def ready(self, request: Request) -> Response:
        return Response(status_code=200 if self.servables.ready else 503)

    async def model_ready(self, request: Request) -> Response:
        servable = self.servables.get(request.path_params["model_id"])
        if servable is None:
            return Response(status_code=404)
        return Response(status_code=200 if servable.ready else 503)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    if error.status_code == 404:
        message = f"no route for {request.method} {request.url.path}; the API is under /v3 (or /v1)"
    else:
        message = f"{error.detail} ({request.method} {request.url.path})"
    return JSONResponse(RequestError(message, status=error.status_code).to_dict(), status_code=error.status_code)


def build_app(servables: Servables) -> Starlette:
    """The ASGI application serving ``servables``; its lifespan watches the event loop's lag."""
    routes_of = OpenAIRoutes(servables)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        watcher = asyncio.ensure_future(watch_loop_lag(routes_of.metrics.loop_lag))
        try:
            yield
        finally:
            watcher.cancel()

    routes = []
    for prefix in API_PREFIXES:
        routes += [
            Route(f"{prefix}/chat/completions", routes_of.completions, methods=["POST"]),
            Route(f"{prefix}/completions", routes_of.completions, methods=["POST"]),
            Route(f"{prefix}/models", routes_of.list_models, methods=["GET"]),
            Route(f"{prefix}/models/{{model_id:path}}", routes_of.get_model, methods=["GET"]),
        ]
    routes += [
        Route("/metrics", routes_of.prometheus, methods=["GET"]),
        Route("/v2/health/live", routes_of.live, methods=["GET"]),
        Route("/v2/health/ready", routes_of.ready, methods=["GET"]),
        Route("/v2/models/{model_id:path}/ready", routes_of.model_ready, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error}, lifespan=lifespan)
