"""Deserialize: the HTTP request payload → a validated OpenAI request."""

from __future__ import annotations

import time
import uuid

from ovserve import Calculator, CalculatorContext, Input, Output
from ovserve.calculators.llm.grammars import LEGACY_FIELDS, legacy_structured_outputs, output_constraint
from ovserve.calculators.llm.messages_api import IGNORED_FIELDS, MessagesRequest
from ovserve.calculators.llm.messages_api import chat_body as messages_chat_body
from ovserve.calculators.llm.request_fields import log_ignored, refuse_unsupported
from ovserve.calculators.llm.responses_api import ResponsesRequest, chat_body
from ovserve.calculators.llm.schema import ChatCompletionRequest, CompletionRequest
from ovserve.calculators.llm.types import LLMRequest
from ovserve.endpoints import not_served
from ovserve.errors import RequestError
from ovserve.payloads import HttpRequestPayload
from ovserve.request_body import parse_body

#: The endpoints the tokenize node answers.
TOKENIZE_SUFFIXES = ("/tokenize", "/detokenize", "/messages/count_tokens")
def completion_body(schema: type[ChatCompletionRequest] | type[CompletionRequest],
                    data: object) -> ChatCompletionRequest | CompletionRequest:
    """A chat or text completion request's JSON body, validated: a 400 naming the field for a value the schema
    does not take, or for a field that asks for what ovserve does not do."""
    if not isinstance(data, dict):
        raise RequestError("the request body must be a JSON object", code="invalid_json")
    legacy = legacy_structured_outputs(data)
    if legacy is None:
        body = parse_body(schema, data)
    else:  # vLLM's guided_* fields, read as the structured_outputs they mean, and named in errors as sent
        name, constraint = legacy
        if data.get("structured_outputs") is not None:
            raise RequestError(f"'{name}' cannot be combined with 'structured_outputs': set one", param=name,
                               code="invalid_value")
        data = {**{k: v for k, v in data.items() if k not in LEGACY_FIELDS}, "structured_outputs": constraint}
        try:
            body = parse_body(schema, data)
            output_constraint(body.response_format, body.structured_outputs)
        except RequestError as error:
            raise _renamed(error, f"structured_outputs.{LEGACY_FIELDS[name]}", name) from None
    refuse_unsupported(body)
    return body


def _renamed(error: RequestError, sent_as: str, name: str) -> RequestError:
    """``error`` naming the legacy field ``name`` where it named ``sent_as``, the field it was read as."""
    if not (error.param or "").startswith(sent_as):
        return error
    param = name + (error.param or "")[len(sent_as):]
    return RequestError(error.message.replace(sent_as, name), status=error.status, param=param, code=error.code)


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
            raise not_served(payload.uri, payload.model, "a text generation model",
                             ("/chat/completions", "/completions", "/responses", "/messages", "/tokenize"))
        body = completion_body(schema, payload.json)
        log_ignored(body)
        ctx.send(self.REQUEST, LLMRequest(kind, body, payload.model, prefix + uuid.uuid4().hex, int(time.time())))

    @staticmethod
    def responses_request(payload: HttpRequestPayload) -> LLMRequest:
        """A Responses API request, as the chat request it means (with the original kept for the answer)."""
        if not isinstance(payload.json, dict):
            raise RequestError("the request body must be a JSON object", code="invalid_json")
        responses = parse_body(ResponsesRequest, payload.json)
        body = parse_body(ChatCompletionRequest, chat_body(responses))
        refuse_unsupported(body)
        return LLMRequest("chat", body, payload.model, f"resp_{uuid.uuid4().hex}", int(time.time()), responses)

    @staticmethod
    def messages_request(payload: HttpRequestPayload) -> LLMRequest:
        """An Anthropic Messages API request, as the chat request it means (with the original kept for the
        answer); its fields that change nothing here are logged once."""
        if not isinstance(payload.json, dict):
            raise RequestError("the request body must be a JSON object", code="invalid_json")
        messages = parse_body(MessagesRequest, payload.json)
        body = parse_body(ChatCompletionRequest, messages_chat_body(messages))
        refuse_unsupported(body)
        log_ignored(messages, IGNORED_FIELDS)
        return LLMRequest("chat", body, payload.model, f"msg_{uuid.uuid4().hex}", int(time.time()), messages=messages)
