"""``GET /openapi.json``: the API as an OpenAPI 3.1 document, built from the request schemas the server
validates with, and the names of the models it serves (so that a client, or a fuzzer, knows them)."""

from __future__ import annotations

from typing import Any

from ovserve.endpoints import builtin_endpoints

_ERROR = {"$ref": "#/components/schemas/Error"}
_ERROR_SCHEMA = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type", "param", "code"],
    "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                   "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}}


#: Errors on the Anthropic Messages API's paths.
_ANTHROPIC_ERROR = {"$ref": "#/components/schemas/AnthropicError"}
_ANTHROPIC_ERROR_SCHEMA = {"type": "object", "required": ["type", "error"], "properties": {
    "type": {"const": "error"}, "request_id": {"type": "string"}, "error": {
        "type": "object", "required": ["type", "message"],
        "properties": {"type": {"type": "string"}, "message": {"type": "string"}}}}}


def _errors(*statuses: int, anthropic: bool = False) -> dict[str, Any]:
    shape, schema = ("an Anthropic-shaped error", _ANTHROPIC_ERROR) if anthropic else ("an OpenAI-shaped error", _ERROR)
    return {str(status): {"description": shape, "content": {"application/json": {"schema": schema}}}
            for status in statuses}


def openapi_document(models: dict[str, list[str]]) -> dict[str, Any]:
    """The document; ``models`` gives the served names by kind (``text_generation``, ``embeddings``, ``rerank``)."""
    schemas: dict[str, Any] = {"Error": _ERROR_SCHEMA, "AnthropicError": _ANTHROPIC_ERROR_SCHEMA}
    paths: dict[str, Any] = {}
    everyone = sorted(name for names in models.values() for name in names)
    for endpoint in builtin_endpoints():
        path, schema, kinds = endpoint.path, endpoint.schema, endpoint.kinds
        if schema is None:
            continue
        body = schema.model_json_schema(ref_template="#/components/schemas/{model}", by_alias=True)
        schemas.update(body.pop("$defs", {}))
        served = everyone if endpoint.any_model else sorted(name for kind in kinds for name in models.get(kind, []))
        if served:
            body["properties"]["model"] = {"type": "string", "enum": served}
        schemas[schema.__name__] = body
        paths[f"/v3{path}"] = {"post": {
            "operationId": path.strip("/").replace("/", "_"),
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{schema.__name__}"}}}},
            "responses": {"200": {"description": "the answer (JSON, or server-sent events when streaming)",
                                  "content": {"application/json": {}, "text/event-stream": {}}},
                          **_errors(400, 404, 413, 429, 503, anthropic=path.startswith("/messages"))},
        }}
        for other in endpoint.also_at:  # e.g. vLLM's /tokenize at the root (where lm-evaluation-harness asks)
            if other in ("/tokenize", "/detokenize"):
                paths[other] = {"post": {**paths[f"/v3{path}"]["post"], "operationId": f"root_{other.strip('/')}"}}
    paths["/tokenizer_info"] = {"get": {"operationId": "tokenizer_info", "responses": {
        "200": {"description": "the text generation model's special tokens, context and chat template"},
        **_errors(400, 404)}}}
    paths["/v3/models"] = {"get": {"operationId": "list_models", "responses": {"200": {"description": "models"}}}}
    paths["/v2/health/ready"] = {"get": {"operationId": "ready", "responses": {
        "200": {"description": "every model is ready"}, "503": {"description": "not yet, or shutting down"}}}}
    return {"openapi": "3.1.0",
            "info": {"title": "ovserve", "version": "0.1.0",
                     "description": "OpenAI-compatible endpoints under /v3 (and the same under /v1), and "
                                    "Anthropic's Messages API at /v1/messages (and /v3/messages)."},
            "paths": paths, "components": {"schemas": schemas}}
