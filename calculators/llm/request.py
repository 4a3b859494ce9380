"""Deserialize: the HTTP request payload → a validated OpenAI request."""

from __future__ import annotations

import time
import uuid

from ovserve.calculators.llm.schema import ChatCompletionRequest, CompletionRequest
from ovserve.calculators.llm.types import LLMRequest
from pydantic import ValidationError

from ovserve import Calculator, CalculatorContext, Input, Output
from ovserve.errors import RequestError
from ovserve.payloads import HttpRequestPayload


def validation_error(error: ValidationError) -> RequestError:
    """The first problem of a pydantic error as an OpenAI ``invalid_request_error``."""
    first = error.errors()[0]
    param = ".".join(str(part) for part in first["loc"]) or None
    if first["type"] == "missing":
        return RequestError(f"'{param}' is required", param=param, code="missing_required_parameter")
    value = f" (got {first['input']!r})" if first["type"] != "model_type" and "input" in first else ""
    return RequestError(f"Invalid value for '{param}': {first['msg']}{value}", param=param, code="invalid_value")


class OpenAIRequestCalculator(Calculator):
    """Validates an OpenAI chat or text completion request (chosen by the URL) and assigns it an id."""

    HTTP_REQUEST_PAYLOAD = Input(HttpRequestPayload, doc="the HTTP request, JSON already parsed")
    REQUEST = Output(LLMRequest, doc="the validated request")

    def process(self, ctx: CalculatorContext) -> None:
        payload: HttpRequestPayload = ctx.value(self.HTTP_REQUEST_PAYLOAD)
        if payload.uri.endswith("/chat/completions"):
            kind, schema, prefix = "chat", ChatCompletionRequest, "chatcmpl-"
        elif payload.uri.endswith("/completions"):
            kind, schema, prefix = "completion", CompletionRequest, "cmpl-"
        else:
            raise RequestError(f"this graph serves /chat/completions and /completions, not {payload.uri}",
                               status=404, code="unknown_url")
        if not isinstance(payload.json, dict):
            raise RequestError("the request body must be a JSON object", code="invalid_json")
        try:
            body = schema.model_validate(payload.json)
        except ValidationError as error:
            raise validation_error(error) from None
        ctx.send(self.REQUEST, LLMRequest(kind, body, payload.model, prefix + uuid.uuid4().hex, int(time.time())))
