"""Serialize: text deltas → an OpenAI JSON response, or server-sent events when streaming."""

from __future__ import annotations

import json

from ovserve import Calculator, CalculatorContext, Input, Output, SideInput
from ovserve.calculators.llm.answer_schema import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatDelta,
    ChatLogprobs,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    FunctionCallDelta,
    FunctionCallOut,
    ToolCallDelta,
    ToolCallOut,
    Usage,
)
from ovserve.calculators.llm.logprobs import chat_logprobs, completion_logprobs
from ovserve.calculators.llm.messages_writer import MessagesWriter
from ovserve.calculators.llm.responses_writer import ResponsesWriter
from ovserve.calculators.llm.types import GenerationLimits, LLMRequest, TextDelta, TokenLogprob, ToolCallPiece
from ovserve.payloads import HttpResponsePayload

EVENT_STREAM = "text/event-stream"
DONE = b"data: [DONE]\n\n"


def _usage(prompt_tokens: int, completion_tokens: int) -> Usage:
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                 total_tokens=prompt_tokens + completion_tokens)


_SLOT = "\u0000ovserve-content\u0000"
_SLOT_JSON = json.dumps(_SLOT)


class ChunkWriter:
    """Server-sent events for one streamed request, in the shapes the pydantic models declare.

    The role, finish and usage chunks are rendered from the models. A choice's content chunk is
    rendered once with a placeholder and split around it, so that each token costs one ``json.dumps``
    of its text rather than building and serializing three models."""

    def __init__(self, request: LLMRequest, fingerprint: str | None = None) -> None:
        self.request = request
        #: OpenAI's ``system_fingerprint``, in every chunk (left out when not known).
        self.fingerprint = fingerprint
        self.chat = request.kind == "chat"
        self._templates: dict[int, tuple[bytes, bytes]] = {}

    def _model(self, text: str | None, finish: str | None, index: int, role: bool = False,
               logprobs: ChatLogprobs | CompletionLogprobs | None = None) -> ChatCompletionChunk | Completion:
        request = self.request
        fields: dict[str, object] = {"id": request.id, "created": request.created, "model": request.model}
        if self.fingerprint is not None:
            fields["system_fingerprint"] = self.fingerprint
        if request.body.include_usage:
            fields["usage"] = None
        if self.chat:
            delta = ChatDelta.model_construct(role="assistant", content=text) if role else (
                ChatDelta.model_construct(content=text) if text is not None else ChatDelta.model_construct())
            choice = ChatChunkChoice.model_construct(index=index, delta=delta, logprobs=logprobs, finish_reason=finish)
            return ChatCompletionChunk.model_construct(object="chat.completion.chunk", choices=[choice], **fields)
        choice = CompletionChoice.model_construct(index=index, text=text or "", logprobs=logprobs,
                                                  finish_reason=finish)
        return Completion.model_construct(object="text_completion", choices=[choice], **fields)

    def _render(self, text: str | None, finish: str | None, index: int, role: bool = False) -> bytes:
        return self._model(text, finish, index, role).model_dump_json(exclude_unset=True).encode()

    def _event(self, text: str | None, finish: str | None, index: int, role: bool = False) -> bytes:
        return b"data: " + self._render(text, finish, index, role) + b"\n\n"

    def role(self, index: int) -> bytes:
        """The first chunk of a chat choice's stream: the assistant role, empty content."""
        return self._event("", None, index, role=True) if self.chat else b""

    def content(self, text: str, index: int, logprobs: ChatLogprobs | CompletionLogprobs | None = None) -> bytes:
        if logprobs is not None:
            return b"data: " + self._model(text, None, index, logprobs=logprobs).model_dump_json(
                exclude_unset=True).encode() + b"\n\n"
        template = self._templates.get(index)
        if template is None:
            before, _, after = self._render(_SLOT, None, index).partition(_SLOT_JSON.encode())
            template = self._templates[index] = (b"data: " + before, after + b"\n\n")
        return template[0] + json.dumps(text, ensure_ascii=False).encode() + template[1]

    def tool_call_pieces(self, pieces: tuple[ToolCallPiece, ...], index: int) -> bytes:
        """A chunk per piece, as OpenAI and vLLM stream calls: the call's ``index``, ``id``, ``type`` and name
        (with empty arguments) first, then its arguments in pieces."""
        body = b""
        for piece in pieces:
            if piece.id is not None:
                first = ToolCallDelta.model_construct(index=piece.index, id=piece.id, type="function",
                                                      function=FunctionCallDelta.model_construct(name=piece.name,
                                                                                                 arguments=""))
                body += self._delta_event(ChatDelta.model_construct(tool_calls=[first]), index)
            if piece.arguments:
                more = ToolCallDelta.model_construct(index=piece.index, function=FunctionCallDelta.model_construct(
                    arguments=piece.arguments))
                body += self._delta_event(ChatDelta.model_construct(tool_calls=[more]), index)
        return body

    def reasoning(self, text: str, index: int) -> bytes:
        return self._delta_event(ChatDelta.model_construct(reasoning_content=text), index)

    def _delta_event(self, delta: ChatDelta, index: int) -> bytes:
        """A chat chunk whose choice carries ``delta`` (tool calls, reasoning)."""
        chunk = self._model(None, None, index)
        chunk.choices[0].delta = delta  # type: ignore[union-attr]
        return b"data: " + chunk.model_dump_json(exclude_unset=True).encode() + b"\n\n"

    def finish(self, reason: str, index: int) -> bytes:
        return self._event(None if self.chat else "", reason, index)

    def usage(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        request = self.request
        model = ChatCompletionChunk if self.chat else Completion
        chunk = model.model_construct(id=request.id, created=request.created, model=request.model,
                                      object=model.model_fields["object"].default, choices=[],
                                      usage=_usage(prompt_tokens, completion_tokens))
        if self.fingerprint is not None:
            chunk.system_fingerprint = self.fingerprint
        return b"data: " + chunk.model_dump_json(exclude_unset=True).encode() + b"\n\n"


def stream_pieces(delta: TextDelta, piecewise: set[int]) -> tuple[ToolCallPiece, ...]:
    """The call pieces to stream for ``delta``: its own, or, from a parser node that sends calls whole only,
    each call of its last delta as one piece. ``piecewise`` remembers the choices that sent pieces."""
    if delta.tool_call_pieces:
        piecewise.add(delta.index)
        return delta.tool_call_pieces
    if delta.tool_calls and delta.index not in piecewise:
        return tuple(ToolCallPiece(i, c.arguments, c.id, c.name) for i, c in enumerate(delta.tool_calls))
    return ()


class OpenAIResponseCalculator(Calculator):
    """Writes OpenAI's exact shapes. Streaming: per choice, the role chunk, content chunks and a chunk with
    ``finish_reason``; once every choice has finished, a usage chunk with empty ``choices`` when
    ``stream_options.include_usage`` is set, then ``data: [DONE]``. Otherwise one ``chat.completion`` /
    ``text_completion`` object with every choice, once all have finished. Usage counts each prompt once (a
    completions request may hold several) and the tokens of every choice."""

    REQUEST = Input(LLMRequest)
    TEXT = Input(TextDelta)
    DIRECT = Input(HttpResponsePayload, optional=True,
                   doc="an answer another node made whole (tokenize), sent as it is")
    LIMITS = SideInput(GenerationLimits, optional=True, doc="the model's system_fingerprint")
    HTTP_RESPONSE_PAYLOAD = Output(HttpResponsePayload)

    def open(self, ctx: CalculatorContext) -> None:
        limits: GenerationLimits | None = ctx.side.get("LIMITS")
        self.fingerprint = limits.system_fingerprint if limits is not None else None
        self.request: LLMRequest | None = None
        self.writer: ChunkWriter | None = None
        self.parts: dict[int, list[str]] = {}
        self.finished: dict[int, TextDelta] = {}
        #: Per choice: the tokens with their log-probabilities so far, and (streaming) the text offset reached.
        self.tokens: dict[int, list[TokenLogprob]] = {}
        self.reasoning: dict[int, list[str]] = {}
        self.offsets: dict[int, int] = {}
        self.responses: ResponsesWriter | None = None
        #: The choices whose calls came in pieces (of a parser node that streams them).
        self.piecewise: set[int] = set()
        self.messages: MessagesWriter | None = None

    def process(self, ctx: CalculatorContext) -> None:
        direct = ctx.value(self.DIRECT)
        if direct is not None:
            ctx.send(self.HTTP_RESPONSE_PAYLOAD, direct)
            return
        request = ctx.value(self.REQUEST)
        if request is not None:
            self.request = request
        delta: TextDelta | None = ctx.value(self.TEXT)
        if delta is None or self.request is None:
            return
        if delta.finish_reason is not None:
            self.finished[delta.index] = delta
        if self.request.messages is not None:
            self.write_messages(ctx, self.request, delta)
        elif self.request.responses is not None:
            self.write_responses(ctx, self.request, delta)
        elif self.request.stream:
            if self.request.body.keeps_answer:
                self.add(delta)
            self.stream(ctx, self.request, delta)
        else:
            self.add(delta)
            if len(self.finished) == self.request.body.choice_count:
                self.complete(ctx, self.request)

    def add(self, delta: TextDelta) -> None:
        """Gather a choice's text, reasoning and scored tokens for the whole answer."""
        self.parts.setdefault(delta.index, []).append(delta.text)
        if delta.reasoning:
            self.reasoning.setdefault(delta.index, []).append(delta.reasoning)
        if delta.logprobs:
            self.tokens.setdefault(delta.index, []).extend(delta.logprobs)

    def write_responses(self, ctx: CalculatorContext, request: LLMRequest, delta: TextDelta) -> None:
        """The Responses API's events (streaming) or its ``response`` object (:mod:`.responses_writer`)."""
        if self.responses is None:
            self.responses = ResponsesWriter(request)
        writer = self.responses
        if delta.reasoning:
            writer.reasoning.append(delta.reasoning)
        done = delta.finish_reason is not None
        usage = writer.usage(*self.usage()) if done else None
        if not request.stream:
            writer.text.append(delta.text)
            if done:
                status = writer.status(delta.finish_reason)
                response = writer.response(status, writer.output("".join(writer.text), "".join(writer.reasoning),
                                                                 delta.tool_calls, status), usage)
                ctx.send(self.HTTP_RESPONSE_PAYLOAD, HttpResponsePayload(
                    json.dumps(response).encode(), log=self.log_fields(request),
                    answer=response if request.responses.store else None))
            return
        body = writer.text_delta(delta.text) + writer.call_pieces(stream_pieces(delta, self.piecewise))
        if done:
            body += writer.finish(delta.finish_reason, usage or {})
        if body or done:
            kept = writer.final if done and request.responses.store else None
            ctx.send(self.HTTP_RESPONSE_PAYLOAD, HttpResponsePayload(
                body, content_type=EVENT_STREAM, last=done, log=self.log_fields(request) if done else None,
                answer=kept))

    def write_messages(self, ctx: CalculatorContext, request: LLMRequest, delta: TextDelta) -> None:
        """The Anthropic Messages API's events (streaming) or its ``message`` object (:mod:`.messages_writer`)."""
        if self.messages is None:
            self.messages = MessagesWriter(request)
        done = delta.finish_reason is not None
        log = self.log_fields(request) if done else None
        if request.stream:
            body = self.messages.stream(delta)
            if body or done:
                ctx.send(self.HTTP_RESPONSE_PAYLOAD, HttpResponsePayload(body, content_type=EVENT_STREAM, last=done,
                                                                         log=log))
            return
        message = self.messages.add(delta)
        if message is not None:
            ctx.send(self.HTTP_RESPONSE_PAYLOAD, HttpResponsePayload(json.dumps(message).encode(), log=log))

    def usage(self) -> tuple[int, int]:
        """(the tokens of every prompt, each counted once; completion tokens of every finished choice)."""
        n = self.request.body.n if self.request is not None else 1
        prompts = {index // n: delta.prompt_tokens for index, delta in self.finished.items()}
        return sum(prompts.values()), sum(d.completion_tokens for d in self.finished.values())

    def stream(self, ctx: CalculatorContext, request: LLMRequest, delta: TextDelta) -> None:
        body = b""
        if self.writer is None:
            self.writer = ChunkWriter(request, self.fingerprint)
        writer = self.writer
        if delta.index not in self.parts:
            self.parts[delta.index] = []
            body = writer.role(delta.index)
        if delta.reasoning:
            body += writer.reasoning(delta.reasoning, delta.index)
        if delta.logprobs:
            body += writer.content(delta.text, delta.index, self.stream_logprobs(request, delta))
        elif delta.text:
            body += writer.content(delta.text, delta.index)
        body += writer.tool_call_pieces(stream_pieces(delta, self.piecewise), delta.index)
        if delta.finish_reason is not None:
            body += writer.finish(delta.finish_reason, delta.index)
        last = len(self.finished) == request.body.choice_count
        answer = None
        if last:
            if request.body.include_usage:
                body += writer.usage(*self.usage())
            body += DONE
            if request.body.keeps_answer:
                answer = self.answer(request).model_dump(mode="json")
        ctx.send(self.HTTP_RESPONSE_PAYLOAD, HttpResponsePayload(
            body, content_type=EVENT_STREAM, last=last, log=self.log_fields(request) if last else None,
            answer=answer))

    def stream_logprobs(self, request: LLMRequest, delta: TextDelta) -> ChatLogprobs | CompletionLogprobs:
        tokens, as_ids = delta.logprobs or (), request.body.return_tokens_as_token_ids
        if request.kind == "chat":
            return chat_logprobs(tokens, as_ids)
        offset = self.offsets.get(delta.index, 0)
        self.offsets[delta.index] = offset + sum(len(t.token) for t in tokens)
        return completion_logprobs(tokens, offset, as_ids)

    def answer_logprobs(self, request: LLMRequest, index: int) -> ChatLogprobs | CompletionLogprobs | None:
        if not request.body.wants_logprobs:
            return None
        tokens, as_ids = self.tokens.get(index, []), request.body.return_tokens_as_token_ids
        return chat_logprobs(tokens, as_ids) if request.kind == "chat" else completion_logprobs(tokens, 0, as_ids)

    def complete(self, ctx: CalculatorContext, request: LLMRequest) -> None:
        """The unary answer, once every choice has finished."""
        response = self.answer(request)
        ctx.send(self.HTTP_RESPONSE_PAYLOAD, HttpResponsePayload(
            response.model_dump_json().encode(), log=self.log_fields(request),
            answer=response.model_dump(mode="json") if request.body.keeps_answer else None))

    def answer(self, request: LLMRequest) -> ChatCompletion | Completion:
        """The whole answer: every finished choice's text (or tool calls), reasoning and log-probabilities."""
        usage = _usage(*self.usage())
        indexes = sorted(self.finished)
        texts = {index: "".join(self.parts.get(index, ())) for index in indexes}
        if request.kind == "chat":
            response: ChatCompletion | Completion = ChatCompletion(
                id=request.id, created=request.created, model=request.model, usage=usage,
                system_fingerprint=self.fingerprint,
                choices=[ChatChoice(index=i, message=self.message(texts[i], self.finished[i],
                                                                  "".join(self.reasoning.get(i, ())) or None),
                                    logprobs=self.answer_logprobs(request, i),  # type: ignore[arg-type]
                                    finish_reason=self.finished[i].finish_reason) for i in indexes])
        else:
            response = Completion(
                id=request.id, created=request.created, model=request.model, usage=usage,
                system_fingerprint=self.fingerprint,
                choices=[CompletionChoice(index=i, text=texts[i], finish_reason=self.finished[i].finish_reason,
                                          logprobs=self.answer_logprobs(request, i))  # type: ignore[arg-type]
                         for i in indexes])
        return response

    @staticmethod
    def message(text: str, last: TextDelta, reasoning: str | None) -> AssistantMessage:
        if not last.tool_calls:
            return AssistantMessage(content=text, reasoning_content=reasoning)
        calls = [ToolCallOut(id=c.id, function=FunctionCallOut(name=c.name, arguments=c.arguments))
                 for c in last.tool_calls]
        return AssistantMessage(content=text or None, reasoning_content=reasoning, tool_calls=calls)

    def log_fields(self, request: LLMRequest) -> dict[str, object]:
        prompt_tokens, completion_tokens = self.usage()
        reasons = [self.finished[i].finish_reason for i in sorted(self.finished)]
        return {"id": request.id, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                "finish_reason": reasons[0] if len(set(reasons)) == 1 else ",".join(map(str, reasons))}
