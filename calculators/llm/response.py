"""Serialize: text deltas → an OpenAI JSON response, or server-sent events when streaming."""

from __future__ import annotations

from ovserve import Calculator, CalculatorContext, Input, Output
from ovserve.calculators.llm.schema import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatDelta,
    Completion,
    CompletionChoice,
    Usage,
)
from ovserve.calculators.llm.types import LLMRequest, TextDelta
from ovserve.payloads import HttpResponsePayload

EVENT_STREAM = "text/event-stream"
DONE = b"data: [DONE]\n\n"


def _event(model: ChatCompletionChunk | Completion) -> bytes:
    return b"data: " + model.model_dump_json(exclude_unset=True).encode() + b"\n\n"


def _usage(delta: TextDelta) -> Usage:
    return Usage(prompt_tokens=delta.prompt_tokens, completion_tokens=delta.completion_tokens,
                 total_tokens=delta.prompt_tokens + delta.completion_tokens)


class OpenAIResponseCalculator(Calculator):
    """Writes OpenAI's exact shapes. Streaming: the role chunk (with the first text), content chunks, a
    chunk with ``finish_reason``, a usage chunk with empty ``choices`` when ``stream_options.include_usage``
    is set, then ``data: [DONE]``. Otherwise one ``chat.completion`` / ``text_completion`` object."""

    REQUEST = Input(LLMRequest)
    TEXT = Input(TextDelta)
    HTTP_RESPONSE_PAYLOAD = Output(HttpResponsePayload)

    def open(self, ctx: CalculatorContext) -> None:
        self.request: LLMRequest | None = None
        self.parts: list[str] = []
        self.started = False

    def process(self, ctx: CalculatorContext) -> None:
        request = ctx.value(self.REQUEST)
        if request is not None:
            self.request = request
        delta: TextDelta | None = ctx.value(self.TEXT)
        if delta is None or self.request is None:
            return
        if self.request.stream:
            self.stream(ctx, self.request, delta)
        else:
            self.parts.append(delta.text)
            if delta.finish_reason is not None:
                self.complete(ctx, self.request, delta)

    def chunk(self, request: LLMRequest, text: str | None, finish: str | None, role: bool = False) -> bytes:
        if request.kind == "chat":
            delta = ChatDelta.model_construct(role="assistant", content=text) if role else (
                ChatDelta.model_construct(content=text) if text is not None else ChatDelta.model_construct())
            choice = ChatChunkChoice.model_construct(index=0, delta=delta, logprobs=None, finish_reason=finish)
            fields = {"id": request.id, "object": "chat.completion.chunk", "created": request.created,
                      "model": request.model, "choices": [choice]}
            if request.body.include_usage:
                fields["usage"] = None
            return _event(ChatCompletionChunk.model_construct(**fields))
        choice = CompletionChoice.model_construct(index=0, text=text or "", logprobs=None, finish_reason=finish)
        fields = {"id": request.id, "object": "text_completion", "created": request.created, "model": request.model,
                  "choices": [choice]}
        if request.body.include_usage:
            fields["usage"] = None
        return _event(Completion.model_construct(**fields))

    def stream(self, ctx: CalculatorContext, request: LLMRequest, delta: TextDelta) -> None:
        body = b""
        if not self.started:
            self.started = True
            if request.kind == "chat":
                body += self.chunk(request, "", None, role=True)
        if delta.text:
            body += self.chunk(request, delta.text, None)
        last = delta.finish_reason is not None
        if last:
            body += self.chunk(request, None if request.kind == "chat" else "", delta.finish_reason)
            if request.body.include_usage:
                model = ChatCompletionChunk if request.kind == "chat" else Completion
                body += _event(model.model_construct(id=request.id, created=request.created, model=request.model,
                                                     object=model.model_fields["object"].default, choices=[],
                                                     usage=_usage(delta)))
            body += DONE
        ctx.send(self.HTTP_RESPONSE_PAYLOAD, HttpResponsePayload(
            body, content_type=EVENT_STREAM, last=last, log=_log(request, delta) if last else None))

    def complete(self, ctx: CalculatorContext, request: LLMRequest, delta: TextDelta) -> None:
        text = "".join(self.parts)
        if request.kind == "chat":
            response: ChatCompletion | Completion = ChatCompletion(
                id=request.id, created=request.created, model=request.model, usage=_usage(delta),
                choices=[ChatChoice(message=AssistantMessage(content=text), finish_reason=delta.finish_reason)])
        else:
            response = Completion(
                id=request.id, created=request.created, model=request.model, usage=_usage(delta),
                choices=[CompletionChoice(text=text, finish_reason=delta.finish_reason)])
        ctx.send(self.HTTP_RESPONSE_PAYLOAD,
                 HttpResponsePayload(response.model_dump_json().encode(), log=_log(request, delta)))


def _log(request: LLMRequest, delta: TextDelta) -> dict[str, object]:
    return {"id": request.id, "prompt_tokens": delta.prompt_tokens, "completion_tokens": delta.completion_tokens,
            "finish_reason": delta.finish_reason}
