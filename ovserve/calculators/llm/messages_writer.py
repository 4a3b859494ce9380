"""Serialize for the Anthropic Messages API: the ``message`` object, or its stream of events.

The answer's content blocks come in the order the model wrote them: ``thinking`` (the model's reasoning, for models
with a reasoning parser), ``text``, then a ``tool_use`` block per call. ``stop_reason`` is ``end_turn``,
``max_tokens``, ``tool_use`` or ``stop_sequence``; for the last, ``stop_sequence`` is the one that matched. Stop
sequences are looked for by the detokenizer alone, in the text (the tokenize node gives the engine none: it drops the
token holding one in some cases), and the request asks it to keep the one it finds at the end of the text
(``include_stop_str_in_output``): it ends the text exactly after the first one found, so the one the text ends with
(the longest, when several do) is the one that stopped it, and it is taken off here.

A stream is ``message_start`` and a ``ping``; per block, ``content_block_start``, its ``content_block_delta``
events (``thinking_delta`` then one ``signature_delta``, ``text_delta``, ``input_json_delta``) and
``content_block_stop``; then ``message_delta`` (``stop_reason``, ``stop_sequence``, ``usage``) and
``message_stop``. A tool call streams as the tool-call parser gives it: a call whose pieces arrive
(``TextDelta.tool_call_pieces``) opens its block at its first piece and streams each piece's JSON text; a call
that arrives whole on the last delta (``TextDelta.tool_calls``) opens, streams its input in one piece and closes
there.

A thinking block's ``signature`` is the SHA-256 of its text: it lets a client tell blocks apart, but it is no
attestation, and ovserve does not check signatures sent back (earlier thinking is left out of the prompt anyway).
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import jiter

from ovserve.calculators.llm.messages_api import MessagesRequest, ThinkingAdaptive, ThinkingEnabled
from ovserve.calculators.llm.types import LLMRequest, TextDelta, ToolCall, ToolCallPiece

log = logging.getLogger("ovserve.llm")

#: The pipeline's finish reasons as Anthropic's stop reasons (a stop sequence is told apart by the text).
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def signature(thinking: str) -> str:
    """A thinking block's ``signature``: the digest of its text."""
    return hashlib.sha256(thinking.encode()).hexdigest()


def tool_input(call: ToolCall) -> dict[str, Any]:
    """A call's arguments as the ``input`` object (the parsers give a JSON object; anything else is logged and
    given as an empty input, since model output must never fail a request)."""
    try:  # read as the SDK reads the streamed input_json_delta pieces: a cut-off object keeps what is whole
        value = jiter.from_json((call.arguments or "{}").encode(), partial_mode=True)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the reader goes
        value = None
    if not isinstance(value, dict):
        log.warning("tool call %s has arguments that are not a JSON object: %.200r", call.id, call.arguments)
        return {}
    return value


class MessagesWriter:
    """Builds one Messages answer from the pipeline's text deltas (one choice: the API has no ``n``)."""

    def __init__(self, request: LLMRequest) -> None:
        assert request.messages is not None
        self.request = request
        self.spec: MessagesRequest = request.messages
        #: Longest first: of two that both end the text, the longer one started first, so it stopped the text.
        self.stops = sorted(self.spec.stop_sequences or (), key=len, reverse=True)
        thinking = self.spec.thinking
        self.omit_thinking = isinstance(thinking, ThinkingEnabled | ThinkingAdaptive) and thinking.display == "omitted"
        self.text: list[str] = []
        self.reasoning: list[str] = []
        # the stream
        self.started = False
        self.blocks = 0
        #: The open block: its kind and index.
        self.open: tuple[str, int] | None = None
        #: The block of each call that streams in pieces, and its arguments so far.
        self.call_blocks: dict[int, int] = {}
        self.call_arguments: dict[int, str] = {}
        #: The thinking of the open thinking block, for its signature.
        self.thinking: list[str] = []

    # --- what both shapes share ------------------------------------------------------------------------

    def _strip_stop(self, before: str, piece: str, finish: str | None) -> tuple[str, str | None]:
        """(``piece`` without the stop sequence that ends ``before + piece``, that stop sequence or ``None``)."""
        if finish != "stop" or not self.stops:
            return piece, None
        whole = before + piece
        matched = next((stop for stop in self.stops if whole.endswith(stop)), None)
        if matched is None:
            return piece, None
        return piece[:max(len(piece) - len(matched), 0)], matched

    def _finish(self, delta: TextDelta) -> tuple[str, str, str | None]:
        """(this last delta's text and reasoning with the stop sequence taken off, the stop sequence)."""
        text, matched = self._strip_stop("".join(self.text), delta.text, delta.finish_reason)
        reasoning = delta.reasoning
        if matched is None and not "".join(self.text) and not delta.text:  # stopped while thinking
            reasoning, matched = self._strip_stop("".join(self.reasoning), delta.reasoning, delta.finish_reason)
        return text, reasoning, matched

    @staticmethod
    def stop_reason(finish_reason: str | None, stop_sequence: str | None) -> str:
        return "stop_sequence" if stop_sequence is not None else STOP_REASONS.get(finish_reason or "", "end_turn")

    @staticmethod
    def usage(delta: TextDelta) -> dict[str, int]:
        return {"input_tokens": delta.prompt_tokens, "output_tokens": delta.completion_tokens}

    def _message(self, content: list[dict[str, Any]], stop_reason: str | None, stop_sequence: str | None,
                 usage: dict[str, int]) -> dict[str, Any]:
        return {"id": self.request.id, "type": "message", "role": "assistant", "model": self.request.model,
                "content": content, "stop_reason": stop_reason, "stop_sequence": stop_sequence, "usage": usage}

    # --- the message object ----------------------------------------------------------------------------

    def add(self, delta: TextDelta) -> dict[str, Any] | None:
        """Take a delta; the whole message once the last one came."""
        if delta.finish_reason is None:
            self.text.append(delta.text)
            self.reasoning.append(delta.reasoning)
            return None
        text, reasoning, matched = self._finish(delta)
        self.text.append(text)
        self.reasoning.append(reasoning)
        content: list[dict[str, Any]] = []
        thinking = "".join(self.reasoning)
        if thinking:
            content.append({"type": "thinking", "thinking": "" if self.omit_thinking else thinking,
                            "signature": signature(thinking)})
        if "".join(self.text):
            content.append({"type": "text", "text": "".join(self.text)})
        content += [{"type": "tool_use", "id": call.id, "name": call.name, "input": tool_input(call)}
                    for call in delta.tool_calls]
        return self._message(content, self.stop_reason(delta.finish_reason, matched), matched, self.usage(delta))

    # --- the stream ------------------------------------------------------------------------------------

    @staticmethod
    def event(kind: str, **fields: Any) -> bytes:
        """One server-sent event, named as its ``type``."""
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **fields}, ensure_ascii=False)}\n\n".encode()

    def _start(self, delta: TextDelta) -> bytes:
        if self.started:
            return b""
        self.started = True
        opening = self._message([], None, None, {"input_tokens": delta.prompt_tokens, "output_tokens": 0})
        return self.event("message_start", message=opening) + self.event("ping")

    def _close(self) -> bytes:
        """End the open block (a thinking block gets its signature first)."""
        if self.open is None:
            return b""
        kind, index = self.open
        self.open = None
        body = b""
        if kind == "thinking":
            body = self.event("content_block_delta", index=index,
                              delta={"type": "signature_delta", "signature": signature("".join(self.thinking))})
            self.thinking = []
        return body + self.event("content_block_stop", index=index)

    def _open(self, kind: str, block: dict[str, Any]) -> tuple[bytes, int]:
        """(events that close the open block and start a new one, the new block's index)."""
        body = self._close()
        index = self.blocks
        self.blocks += 1
        self.open = (kind, index)
        return body + self.event("content_block_start", index=index, content_block=block), index

    def _into(self, kind: str, block: dict[str, Any]) -> tuple[bytes, int]:
        """Keep writing the open block of this ``kind``, or open one."""
        if self.open is not None and self.open[0] == kind:
            return b"", self.open[1]
        return self._open(kind, block)

    def _thinking_delta(self, text: str) -> bytes:
        body, index = self._into("thinking", {"type": "thinking", "thinking": "", "signature": ""})
        self.thinking.append(text)
        self.reasoning.append(text)
        if self.omit_thinking:
            return body
        return body + self.event("content_block_delta", index=index, delta={"type": "thinking_delta",
                                                                             "thinking": text})

    def _text_delta(self, text: str) -> bytes:
        body, index = self._into("text", {"type": "text", "text": ""})
        self.text.append(text)
        return body + self.event("content_block_delta", index=index, delta={"type": "text_delta", "text": text})

    def _piece(self, piece: ToolCallPiece) -> bytes:
        """A piece of a streaming call: its block opens at its first piece, then its JSON text streams. (A piece of a
        call whose block another block has closed still goes out, at its block's index, where clients add it up.)"""
        body = b""
        index = self.call_blocks.get(piece.index)
        if index is None:
            body, index = self._open("tool_use", {"type": "tool_use", "id": piece.id or "", "name": piece.name or "",
                                                  "input": {}})
            self.call_blocks[piece.index] = index
            self.call_arguments[piece.index] = ""
        if not piece.arguments:
            return body
        self.call_arguments[piece.index] += piece.arguments
        return body + self.event("content_block_delta", index=index,
                                 delta={"type": "input_json_delta", "partial_json": piece.arguments})

    def _whole_calls(self, calls: tuple[ToolCall, ...]) -> bytes:
        """The calls of the last delta that did not stream in pieces, each a whole block; of those that did, the
        rest of their arguments if the pieces fell short of them."""
        body = b""
        for number, call in enumerate(calls):
            index = self.call_blocks.get(number)
            if index is None:
                opened, index = self._open("tool_use", {"type": "tool_use", "id": call.id, "name": call.name,
                                                        "input": {}})
                body += opened
                rest = call.arguments
            else:  # the pieces should have given it all; what they left out at the end goes now
                streamed = self.call_arguments[number]
                rest = call.arguments[len(streamed):] if call.arguments.startswith(streamed) else ""
                if call.arguments != streamed and not rest:
                    log.warning("tool call %s streamed arguments %.200r, not its final arguments %.200r", call.id,
                                streamed, call.arguments)
            if rest:
                body += self.event("content_block_delta", index=index,
                                   delta={"type": "input_json_delta", "partial_json": rest})
        return body

    def stream(self, delta: TextDelta) -> bytes:
        """The events this delta makes; with the last delta, the message's end."""
        body = self._start(delta)
        text, reasoning, matched = delta.text, delta.reasoning, None
        if delta.finish_reason is not None:
            text, reasoning, matched = self._finish(delta)
        # more of a call whose block is open goes before new blocks: opening one closes the open block
        going_on = [p for p in delta.tool_call_pieces if p.index in self.call_blocks]
        new = [p for p in delta.tool_call_pieces if p.index not in self.call_blocks]
        for piece in going_on:
            body += self._piece(piece)
        if reasoning:
            body += self._thinking_delta(reasoning)
        if text:
            body += self._text_delta(text)
        for piece in new:
            body += self._piece(piece)
        if delta.finish_reason is None:
            return body
        body += self._whole_calls(delta.tool_calls) + self._close()
        body += self.event("message_delta", delta={"stop_reason": self.stop_reason(delta.finish_reason, matched),
                                                   "stop_sequence": matched}, usage=self.usage(delta))
        return body + self.event("message_stop")
