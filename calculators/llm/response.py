"""Serialize: text deltas → an OpenAI JSON response, or server-sent events when streaming."""

from __future__ import annotations

import json

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


def _usage(delta: TextDelta) -> Usage:
    return Usage(prompt_tokens=delta.prompt_tokens, completion_tokens=delta.completion_tokens,
                 total_tokens=delta.prompt_tokens + delta.completion_tokens)


_SLOT = "\u0000ovserve-content\u0000"
_SLOT_JSON = json.dumps(_SLOT)


class ChunkWriter:
    """Server-sent events for one streamed request, in the shapes the pydantic models declare.

    The role, finish and usage chunks are rendered from the models. The content chunk is rendered
    once with a placeholder and split around it, so that each token costs one ``json.dumps`` of its
    text rather than building and serializing three models."""

    def __init__(self, request: LLMRequest) -> None:
        self.request = request
        self.chat = request.kind == "chat"
        before, _, after = self._render(_SLOT, None).partition(_SLOT_JSON.encode())
        self._before, self._after = b"data: " + before, after + b"\n\n"

    def _model(self, text: str | None, finish: str | None, role: bool = False) -> ChatCompletionChunk | Completion:
        request = self.request
        fields: dict[str, object] = {"id": request.id, "created": request.created, "model": request.model}
        if request.body.include_usage:
            fields["usage"] = None
        if self.chat:
            delta = ChatDelta.model_construct(role="assistant", content=text) if role else (
                ChatDelta.model_construct(content=text) if text is not None else ChatDelta.model_construct())
            choice = ChatChunkChoice.model_construct(index=0, delta=delta, logprobs=None, finish_reason=finish)
            return ChatCompletionChunk.model_construct(object="chat.completion.chunk", choices=[choice], **fields)
        choice = CompletionChoice.model_construct(index=0, text=text or "", logprobs=None, finish_reason=finish)
        return Completion.model_construct(object="text_completion", choices=[choice], **fields)

    def _render(self, text: str | None, finish: str | None, role: bool = False) -> bytes:
        return self._model(text, finish, role).model_dump_json(exclude_unset=True).encode()

    def _event(self, text: str | None, finish: str | None, role: bool = False) -> bytes:
        return b"data: " + self._render(text, finish, role) + b"\n\n"

    def role(self) -> bytes:
        """The first chunk of a chat stream: the assistant role, empty content."""
        return self._event("", None, role=True) if self.chat else b""

    def content(self, text: str) -> bytes:
        return self._before + json.dumps(text, ensure_ascii=False).encode() + self._after

    def finish(self, reason: str) -> bytes:
        return self._event(None if self.chat else "", reason)

    def usage(self, delta: TextDelta) -> bytes:
        request = self.request
        model = ChatCompletionChunk if self.chat else Completion
        chunk = model.model_construct(id=request.id, created=request.created, model=request.model,
                                      object=model.model_fields["object"].default, choices=[], usage=_usage(delta))
        return b"data: " + chunk.model_dump_json(exclude_unset=True).encode() + b"\n\n"


class OpenAIResponseCalculator(Calculator):
    """Writes OpenAI's exact shapes. Streaming: the role chunk (with the first text), content chunks, a
    chunk with ``finish_reason``, a usage chunk with empty ``choices`` when ``stream_options.include_usage``
    is set, then ``data: [DONE]``. Otherwise one ``chat.completion`` / ``text_completion`` object."""

    REQUEST = Input(LLMRequest)
    TEXT = Input(TextDelta)
    HTTP_RESPONSE_PAYLOAD = Output(HttpResponsePayload)

    def open(self, ctx: CalculatorContext) -> None:
        self.request: LLMRequest | None = None
        self.writer: ChunkWriter | None = None
        self.parts: list[str] = []

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

    def stream(self, ctx: CalculatorContext, request: LLMRequest, delta: TextDelta) -> None:
        body = b""
        if self.writer is None:
            self.writer = ChunkWriter(request)
            body = self.writer.role()
        writer = self.writer
        if delta.text:
            body += writer.content(delta.text)
        last = delta.finish_reason is not None
        if last:
            body += writer.finish(delta.finish_reason)  # type: ignore[arg-type]
            if request.body.include_usage:
                body += writer.usage(delta)
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
