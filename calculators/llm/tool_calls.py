"""Parse tool calls: the generic-format JSON answer → OpenAI ``tool_calls`` or plain content.

A node between detokenize and serialize, so that a graph can swap in a parser of its own (a model
family's format) and test it alone with :func:`ovserve.testing.run_calculator`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

from ovserve import Calculator, CalculatorContext, Input, Output
from ovserve.calculators.llm.schema import ChatCompletionRequest
from ovserve.calculators.llm.types import LLMRequest, TextDelta, ToolCall


def parse_generic(text: str) -> tuple[str | None, tuple[ToolCall, ...]]:
    """(content, tool calls) of an answer in the generic format: ``{"tool_calls": [{"name", "arguments"}]}``
    or ``{"content": "..."}``. Text that is neither (cut by ``max_tokens``) is returned as content."""
    try:
        answer = json.loads(text)
    except json.JSONDecodeError:
        return text, ()
    if not isinstance(answer, dict):
        return text, ()
    calls = answer.get("tool_calls")
    if isinstance(calls, list) and calls and all(isinstance(c, dict) and "name" in c for c in calls):
        return None, tuple(ToolCall(f"call_{uuid.uuid4().hex[:24]}", str(c["name"]),
                                    json.dumps(c.get("arguments", {}), ensure_ascii=False)) for c in calls)
    content = answer.get("content")
    return (content if isinstance(content, str) else text), ()


class ToolCallParserCalculator(Calculator):
    """Turns a tool-calling answer into ``tool_calls`` (``finish_reason: "tool_calls"``) or content.

    Requests without tools the answer may call pass straight through, delta by delta. With tools, a
    choice's text is held until it finishes (the JSON is only whole then), then goes out as one delta:
    the calls, or the content of ``{"content": ...}``."""

    REQUEST = Input(LLMRequest)
    TEXT = Input(TextDelta, doc="the detokenized answer")
    PARSED = Output(TextDelta, doc="content, or tool calls once the answer is whole")

    def open(self, ctx: CalculatorContext) -> None:
        self.tools = False
        self.held: dict[int, list[TextDelta]] = {}

    def process(self, ctx: CalculatorContext) -> None:
        request: LLMRequest | None = ctx.value(self.REQUEST)
        if request is not None:
            body = request.body
            self.tools = isinstance(body, ChatCompletionRequest) and bool(body.callable_tools())
        delta: TextDelta | None = ctx.value(self.TEXT)
        if delta is None:
            return
        if not self.tools:
            ctx.send(self.PARSED, delta)
            return
        held = self.held.setdefault(delta.index, [])
        held.append(delta)
        if delta.finish_reason is None:
            return
        text = "".join(d.text for d in held)
        logprobs = tuple(t for d in held for t in d.logprobs or ()) if any(d.logprobs for d in held) else None
        content, calls = parse_generic(text) if delta.finish_reason == "stop" else (text, ())
        finish = "tool_calls" if calls else delta.finish_reason
        ctx.send(self.PARSED, replace(delta, text=content or "", finish_reason=finish, logprobs=logprobs,
                                      tool_calls=calls))
