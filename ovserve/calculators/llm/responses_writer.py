"""Serialize for the Responses API: the ``response`` object, or its stream of events.

Streaming follows OpenAI's sequence, each event with a ``sequence_number``: ``response.created``,
``response.in_progress``; for the text, ``response.output_item.added`` (a message), ``response.content_part.added``,
the ``response.output_text.delta`` events, then ``response.output_text.done``, ``response.content_part.done``,
``response.output_item.done``; for each function call as it streams, ``response.output_item.added``,
``response.function_call_arguments.delta`` per piece and ``.done``, ``response.output_item.done``; last
``response.completed`` (or ``response.incomplete`` when ``max_output_tokens`` cut the answer). As OpenAI does,
the stream ends after the last event, with no ``data: [DONE]``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from ovserve.calculators.llm.responses_api import ResponsesRequest
from ovserve.calculators.llm.types import LLMRequest, ToolCall, ToolCallPiece


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class ResponsesWriter:
    """Builds one Responses answer from the pipeline's text deltas."""

    def __init__(self, request: LLMRequest) -> None:
        assert request.responses is not None
        self.request = request
        self.spec: ResponsesRequest = request.responses
        self.sequence = 0
        self.started = False
        self.message_id: str | None = None
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.message_closed = False
        #: The items a stream has closed, in order.
        self.streamed: list[dict[str, Any]] = []
        #: The ``response`` object the stream ended with (``finish``).
        self.final: dict[str, Any] | None = None
        #: The call whose arguments stream now: (the call, its item id, its output index, its arguments so far).
        self.open_call: tuple[ToolCall, str, int, list[str]] | None = None

    # --- the response object ----------------------------------------------------------------------------

    def response(self, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None) -> dict[str, Any]:
        spec = self.spec
        text_format = spec.text.format.model_dump(by_alias=True, exclude_none=True) if spec.text else {"type": "text"}
        return {
            "id": self.request.id, "object": "response", "created_at": self.request.created, "status": status,
            "error": None, "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": spec.instructions, "max_output_tokens": spec.max_output_tokens, "model": self.request.model,
            "output": output, "parallel_tool_calls": spec.parallel_tool_calls is not False,
            "previous_response_id": spec.previous_response_id, "reasoning": {"effort": None, "summary": None},
            "store": spec.store, "temperature": spec.temperature, "text": {"format": text_format},
            "tool_choice": spec.tool_choice or "auto", "tools": spec.tools or [], "top_p": spec.top_p,
            "truncation": "disabled", "usage": usage, "user": spec.user, "metadata": spec.metadata or {},
        }

    @staticmethod
    def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        return {"input_tokens": prompt_tokens, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": prompt_tokens + completion_tokens}

    def message_item(self, text: str, status: str) -> dict[str, Any]:
        return {"id": self.message_id or _new_id("msg"), "type": "message", "status": status, "role": "assistant",
                "content": [self._text_part(text)]}

    @staticmethod
    def _text_part(text: str) -> dict[str, Any]:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    @staticmethod
    def call_item(call: ToolCall, item_id: str, arguments: str | None = None) -> dict[str, Any]:
        return {"id": item_id, "type": "function_call", "status": "completed", "call_id": call.id, "name": call.name,
                "arguments": call.arguments if arguments is None else arguments}

    def output(self, text: str, reasoning: str, calls: tuple[ToolCall, ...], status: str) -> list[dict[str, Any]]:
        """The output items: reasoning (if any), the message (if it has text or nothing else), the calls."""
        items: list[dict[str, Any]] = []
        if reasoning:
            items.append({"id": _new_id("rs"), "type": "reasoning", "summary": [],
                          "content": [{"type": "reasoning_text", "text": reasoning}]})
        if text or not calls:
            items.append(self.message_item(text, status))
        items += [self.call_item(call, _new_id("fc")) for call in calls]
        return items

    @staticmethod
    def status(finish_reason: str | None) -> str:
        return "incomplete" if finish_reason == "length" else "completed"

    # --- the stream ------------------------------------------------------------------------------------

    def _event(self, kind: str, **fields: Any) -> bytes:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return f"event: {kind}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n".encode()

    def start(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        opening = self.response("in_progress", [], None)
        return self._event("response.created", response=opening) + self._event("response.in_progress",
                                                                                 response=opening)

    def _open_message(self) -> bytes:
        """The message item's opening events, once (it comes first in a stream: reasoning goes into the final
        object only)."""
        if self.message_id is not None:
            return b""
        self.message_id = _new_id("msg")
        return (self._event("response.output_item.added", output_index=0,
                            item={**self.message_item("", "in_progress"), "content": []})
                + self._event("response.content_part.added", item_id=self.message_id, output_index=0,
                              content_index=0, part=self._text_part("")))

    def text_delta(self, text: str) -> bytes:
        body = self.start()
        if not text:
            return body
        self.text.append(text)
        return body + self._open_message() + self._event("response.output_text.delta", item_id=self.message_id,
                                                         output_index=0, content_index=0, delta=text, logprobs=[])

    def _close_message(self, status: str) -> bytes:
        """The message item's closing events (its text is whole: a call began, or the answer ended)."""
        if self.message_id is None or self.message_closed:
            return b""
        self.message_closed = True
        text = "".join(self.text)
        item = self.message_item(text, status)
        index = len(self.streamed)
        body = self._event("response.output_text.done", item_id=self.message_id, output_index=index,
                           content_index=0, text=text, logprobs=[])
        body += self._event("response.content_part.done", item_id=self.message_id, output_index=index,
                            content_index=0, part=self._text_part(text))
        self.streamed.append(item)
        return body + self._event("response.output_item.done", output_index=index, item=item)

    def call_pieces(self, pieces: tuple[ToolCallPiece, ...]) -> bytes:
        """A call's item opens with its first piece (the message before it closes); its arguments stream as
        ``response.function_call_arguments.delta`` events."""
        body = self.start()
        for piece in pieces:
            if piece.id is not None:
                body += self._close_message("completed") + self._close_call("completed")
                call = ToolCall(piece.id, piece.name or "", "")
                self.open_call = (call, _new_id("fc"), len(self.streamed), [])
                body += self._event("response.output_item.added", output_index=self.open_call[2],
                                    item={**self.call_item(call, self.open_call[1], ""), "status": "in_progress"})
            if piece.arguments and self.open_call is not None:
                _, item_id, index, arguments = self.open_call
                arguments.append(piece.arguments)
                body += self._event("response.function_call_arguments.delta", item_id=item_id, output_index=index,
                                    delta=piece.arguments)
        return body

    def _close_call(self, status: str) -> bytes:
        if self.open_call is None:
            return b""
        call, item_id, index, arguments = self.open_call
        self.open_call = None
        text = "".join(arguments)
        body = self._event("response.function_call_arguments.done", item_id=item_id, output_index=index,
                           name=call.name, arguments=text)
        item = {**self.call_item(call, item_id, text), "status": status}
        self.streamed.append(item)
        return body + self._event("response.output_item.done", output_index=index, item=item)

    def finish(self, finish_reason: str | None, usage: dict[str, Any]) -> bytes:
        """The closing events of the items still open, then ``response.completed`` or ``response.incomplete``."""
        body = self.start()
        status = self.status(finish_reason)
        if not self.streamed and self.open_call is None:
            body += self._open_message()  # an empty answer's message opens and closes here
        body += self._close_message(status) + self._close_call(status)
        final = self.response(status, self.streamed, usage)
        self.final = final
        return body + self._event(f"response.{status}", response=final)
