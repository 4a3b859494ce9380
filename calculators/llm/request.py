"""Deserialize: the HTTP request payload → a validated OpenAI request."""

from __future__ import annotations

import re
import time
import uuid
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from ovserve import Calculator, CalculatorContext, Input, Output
from ovserve.calculators.llm.messages_api import IGNORED_FIELDS, MessagesRequest
from ovserve.calculators.llm.messages_api import chat_body as messages_chat_body
from ovserve.calculators.llm.request_fields import log_ignored, refuse_unsupported
from ovserve.calculators.llm.responses_api import ResponsesRequest, chat_body
from ovserve.calculators.llm.schema import ChatCompletionRequest, CompletionRequest
from ovserve.calculators.llm.types import LLMRequest
from ovserve.errors import RequestError
from ovserve.payloads import HttpRequestPayload


def _param(loc: tuple[str | int, ...]) -> tuple[str | None, str | None]:
    """(OpenAI's ``param`` like ``messages[0].role``, the union member the error is about)."""
    param, member = "", None
    for part in loc:
        if isinstance(part, int):
            param += f"[{part}]"
        elif _FIELD.match(part) and part not in _TYPE_NAMES:
            param += f".{part}" if param else part
        else:
            member = part
    return param or None, member


def validation_error(error: ValidationError) -> RequestError:
    """The most telling problem of a pydantic error as an OpenAI ``invalid_request_error``."""
    problems = error.errors()
    # With a union, every member reports; a member's own complaint beats "not of this type".
    first = next((p for p in problems if not p["type"].endswith("_type")), problems[0])
    param, member = _param(tuple(first["loc"]))
    members = [_param(tuple(p["loc"])) for p in problems]
    if len(members) > 1 and all(p["type"].endswith("_type") for p in problems) and {m[0] for m in members} == {param}:
        expected = " or ".join(m[1] or "?" for m in members)
        return RequestError(f"Invalid value for '{param}': expected {expected} (got {first.get('input')!r})",
                            param=param, code="invalid_value")
    if first["type"] == "missing":
        return RequestError(f"'{param}' is required", param=param, code="missing_required_parameter")
    value = f" (got {first['input']!r})" if "input" in first and not isinstance(first["input"], dict) else ""
    as_member = f" (as {member})" if member else ""
    message = first["msg"].removeprefix("Value error, ")
    return RequestError(f"Invalid value for '{param}'{as_member}: {message}{value}", param=param, code="invalid_value")


#: The endpoints the tokenize node answers.
TOKENIZE_SUFFIXES = ("/tokenize", "/detokenize", "/messages/count_tokens")
ModelT = TypeVar("ModelT", bound=BaseModel)


def parse_body(schema: type[ModelT], data: object) -> ModelT:
    """``data`` validated as ``schema``; a 400 naming the field otherwise."""
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        raise validation_error(error) from None


def completion_body(schema: type[ChatCompletionRequest] | type[CompletionRequest],
                    data: object) -> ChatCompletionRequest | CompletionRequest:
    """A chat or text completion request's JSON body, validated: a 400 naming the field for a value the schema
    does not take, or for a field that asks for what ovserve does not do."""
    if not isinstance(data, dict):
        raise RequestError("the request body must be a JSON object", code="invalid_json")
    body = parse_body(schema, data)
    refuse_unsupported(body)
    return body


_FIELD = re.compile(r"^[a-z_][a-z0-9_]*$")
_TYPE_NAMES = {"str", "int", "float", "bool", "list", "dict", "none"}


class OpenAIRequestCalculator(Calculator):
    """Validates an OpenAI chat or text completion request (chosen by the URL) and assigns it an id."""

    #: Validation, the chat template and tokenization take milliseconds for long prompts: not on the event loop.
    runs_in_thread = True

    HTTP_REQUEST_PAYLOAD = Input(HttpRequestPayload, doc="the HTTP request, JSON already parsed")
    REQUEST = Output(LLMRequest, doc="the validated request")
    TOKENIZE = Output(HttpRequestPayload, doc="a /tokenize or /detokenize request, for the tokenize endpoint node")

    def process(self, ctx: CalculatorContext) -> None:
        payload: HttpRequestPayload = ctx.value(self.HTTP_REQUEST_PAYLOAD)
        if payload.uri.endswith(TOKENIZE_SUFFIXES):
            ctx.send(self.TOKENIZE, payload)
            return
        if payload.uri.endswith("/responses"):
            ctx.send(self.REQUEST, self.responses_request(payload))
            return
        if payload.uri.endswith("/messages"):
            ctx.send(self.REQUEST, self.messages_request(payload))
            return
        if payload.uri.endswith("/chat/completions"):
            kind, schema, prefix = "chat", ChatCompletionRequest, "chatcmpl-"
        elif payload.uri.endswith("/completions"):
            kind, schema, prefix = "completion", CompletionRequest, "cmpl-"
        else:
            raise RequestError(f"the model '{payload.model}' is a text generation model: it serves /chat/completions, "
                               f"/completions, /responses, /messages and /tokenize, not {payload.uri}", param="model",
                               code="unsupported_model")
        body = completion_body(schema, payload.json)
        log_ignored(body)
        ctx.send(self.REQUEST, LLMRequest(kind, body, payload.model, prefix + uuid.uuid4().hex, int(time.time())))

    @staticmethod
    def responses_request(payload: HttpRequestPayload) -> LLMRequest:
        """A Responses API request, as the chat request it means (with the original kept for the answer)."""
        if not isinstance(payload.json, dict):
            raise RequestError("the request body must be a JSON object", code="invalid_json")
        try:
            responses = ResponsesRequest.model_validate(payload.json)
            body = ChatCompletionRequest.model_validate(chat_body(responses))
        except ValidationError as error:
            raise validation_error(error) from None
        refuse_unsupported(body)
        return LLMRequest("chat", body, payload.model, f"resp_{uuid.uuid4().hex}", int(time.time()), responses)

    @staticmethod
    def messages_request(payload: HttpRequestPayload) -> LLMRequest:
        """An Anthropic Messages API request, as the chat request it means (with the original kept for the
        answer); its fields that change nothing here are logged once."""
        if not isinstance(payload.json, dict):
            raise RequestError("the request body must be a JSON object", code="invalid_json")
        messages = parse_body(MessagesRequest, payload.json)
        try:
            body = ChatCompletionRequest.model_validate(messages_chat_body(messages))
        except ValidationError as error:
            raise validation_error(error) from None
        refuse_unsupported(body)
        log_ignored(messages, IGNORED_FIELDS)
        return LLMRequest("chat", body, payload.model, f"msg_{uuid.uuid4().hex}", int(time.time()), messages=messages)
