"""Parse tool calls: the answer's text → OpenAI ``tool_calls`` and content, in the model's format.

A node between detokenize and serialize, so that a graph can swap in a parser of its own and test it
alone with :func:`ovserve.testing.run_calculator`. The formats are in
:mod:`ovserve.calculators.llm.tool_parsers`; which one an answer is in comes from the request's plan
(:attr:`Prompt.plan`), decided from the engine node's ``ModelParsers`` when the request was tokenized.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from ovserve import Calculator, CalculatorContext, Input, Output
from ovserve.calculators.llm.call_pieces import CallPieces
from ovserve.calculators.llm.call_scanners import CallScanner, scanner_for
from ovserve.calculators.llm.markers import split_before_partial_marker
from ovserve.calculators.llm.tool_parsers import PARSERS, ToolParser
from ovserve.calculators.llm.types import Prompt, TextDelta, TokenLogprob, ToolCall, ToolCallPiece

log = logging.getLogger("ovserve.llm")


class ToolCallSplitter:
    """One choice's text, split as it streams: content goes out at once; from where a tool call may start (a
    marker of the format), the text is read by the format's incremental reader, whose calls stream in pieces
    (:meth:`pieces`). When the answer ends, the calls read are the answer's; an answer the reader found no
    call in is parsed whole, as the format's parser reads it, and is content if it holds none."""

    def __init__(self, parser: ToolParser, max_calls: int | None = None) -> None:
        self.parser = parser
        self.max_calls = max_calls
        self.pending = ""  # text that may be the start of a marker
        self.held: str | None = None  # the tool-call part, once a marker was seen
        self.started = False  # content has been shown (formats whose calls only start an answer)
        self.calls = CallPieces(max_calls)
        self.scanner: CallScanner | None = None

    def push(self, text: str) -> str:
        """Add text; return the part that is content for sure."""
        if self.held is not None:
            self.held += text
            return self._scan(text)
        text, self.pending = self.pending + text, ""
        markers = self.parser.markers
        if self.parser.at_start:
            if self.started:
                return text
            stripped = text.lstrip()
            if any(stripped.startswith(m) for m in markers):
                self.held = text
                return self._scan(text)
            if not stripped or any(m.startswith(stripped) for m in markers):
                self.pending = text
                return ""
            self.started = True
            return text
        found = [i for i in (text.find(m) for m in markers) if i >= 0]
        if found:
            self.held = text[min(found):]
            return text[:min(found)] + self._scan(self.held)
        text, self.pending = split_before_partial_marker(text, markers)
        return text

    def _scan(self, text: str) -> str:
        """Read held text for calls; the content the format carries in its syntax."""
        if self.scanner is None:
            self.scanner = scanner_for(self.parser.name, self.calls)
        self.scanner.feed(text)
        return self.scanner.take_content()

    def pieces(self) -> tuple[ToolCallPiece, ...]:
        """The call pieces read since last asked, to send now."""
        return self.calls.take()

    def finish(self, finish_reason: str | None) -> tuple[str, tuple[ToolCall, ...]]:
        """(the rest of the content, the calls) once the answer has ended. Calls cut short by ``max_tokens`` keep
        the arguments written, as OpenAI's do; an answer cut inside the call syntax before any call was read is
        no content (never tool-call syntax shown as text)."""
        if self.held is None or self.scanner is None:
            return self.rest(), ()
        if finish_reason == "length" and self.scanner.saw_calls:
            self.calls.confirm_cut()
        if self.calls.any_confirmed:
            return "", self.calls.calls()
        if self.scanner.in_content:
            return self.scanner.take_content(), ()
        if finish_reason == "length" and self.scanner.saw_calls:
            return "", ()
        try:
            content, calls = self.parser.parse(self.held)
        except Exception as error:  # model output must never fail a request: it goes back as content, as in vLLM
            log.warning("the %s tool parser could not parse an answer (%s: %s); it is returned as content",
                        self.parser.name, type(error).__name__, str(error)[:200])
            return self.rest(), ()
        self.calls.add_whole(calls[:self.max_calls] if self.max_calls is not None else calls)
        return content or "", self.calls.calls()

    def rest(self) -> str:
        """Whatever is held, as text."""
        rest, self.pending, self.held = self.pending + (self.held or ""), "", None
        return rest


@dataclass
class _Choice:
    splitter: ToolCallSplitter
    logprobs: list[TokenLogprob]


class ToolCallParserCalculator(Calculator):
    """Turns tool calls in an answer into ``tool_calls`` (``finish_reason: "tool_calls"``).

    Requests without tools the answer may call pass straight through. With tools, content streams as it comes
    until a tool call may start; from there the format's incremental reader streams each call in pieces
    (``tool_call_pieces``: id and name, then the arguments' text), and the choice's last delta carries the whole
    calls (``finish_reason: "tool_calls"``), or the held text as content when it held no call after all."""

    PROMPT = Input(Prompt, doc="its plan: the format the answer's tool calls are in (none: passed through), and "
                               "whether it may make only one")
    TEXT = Input(TextDelta, doc="the detokenized answer")
    PARSED = Output(TextDelta, doc="content, and tool calls once the answer is whole")

    def open(self, ctx: CalculatorContext) -> None:
        self.parser: ToolParser | None = None
        self.one_call = False
        self.choices: dict[int, _Choice] = {}

    def process(self, ctx: CalculatorContext) -> None:
        prompt: Prompt | None = ctx.value(self.PROMPT)
        if prompt is not None and prompt.plan.tool_format is not None:
            self.parser = PARSERS[prompt.plan.tool_format]
            self.one_call = prompt.plan.one_call
        delta: TextDelta | None = ctx.value(self.TEXT)
        if delta is None:
            return
        if self.parser is None:
            ctx.send(self.PARSED, delta)
            return
        choice = self.choices.get(delta.index)
        if choice is None:
            splitter = ToolCallSplitter(self.parser, 1 if self.one_call else None)
            choice = self.choices[delta.index] = _Choice(splitter, [])
        choice.logprobs.extend(delta.logprobs or ())
        text = choice.splitter.push(delta.text)
        calls: tuple[ToolCall, ...] = ()
        finish = delta.finish_reason
        if finish is not None:
            rest, calls = choice.splitter.finish(finish)
            text += rest
            if finish == "stop" and calls:
                finish = "tool_calls"  # cut by max_tokens, the calls go out with finish "length", as OpenAI's do
        pieces = choice.splitter.pieces()
        if text or finish is not None or delta.reasoning or pieces:
            logprobs = tuple(choice.logprobs) if choice.logprobs else delta.logprobs
            choice.logprobs.clear()
            ctx.send(self.PARSED, replace(delta, text=text, finish_reason=finish, logprobs=logprobs,
                                          tool_calls=calls, tool_call_pieces=pieces))
