"""Detokenize: token ids → text deltas, UTF-8 safe, cut exactly before a stop string."""

from __future__ import annotations

from ovserve import Calculator, CalculatorContext, Input, Output, SideInput
from ovserve.calculators.llm.types import GenerationDelta, LLMRequest, TextDelta
from ovserve.engine.tokenizer import IncrementalDetokenizer, TextTokenizer


class StopStringFilter:
    """Holds back text that may be the start of a stop string; cuts the text where one begins."""

    def __init__(self, stops: tuple[str, ...], include_stop: bool = False) -> None:
        self.stops = stops
        self.include_stop = include_stop
        self.held = ""

    def push(self, text: str) -> tuple[str, bool]:
        """(text that is safe to show, whether a stop string was found)."""
        if not self.stops:
            return text, False
        text = self.held + text
        found = [(i, -len(stop)) for stop in self.stops if (i := text.find(stop)) >= 0]
        if found:
            self.held = ""
            cut, minus_length = min(found)  # the first stop; of those starting there, the longest
            return text[:cut - minus_length if self.include_stop else cut], True
        keep = 0
        for stop in self.stops:
            for length in range(min(len(stop) - 1, len(text)), keep, -1):
                if text.endswith(stop[:length]):
                    keep = length
                    break
        self.held = text[len(text) - keep:] if keep else ""
        return text[: len(text) - keep], False

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held


class DetokenizerCalculator(Calculator):
    """Streams text as tokens arrive; never splits a character, never shows part of a stop string."""

    DELTAS = Input(GenerationDelta)
    REQUEST = Input(LLMRequest, doc="for its stop strings")
    TOKENIZER = SideInput(TextTokenizer)
    TEXT = Output(TextDelta)

    def open(self, ctx: CalculatorContext) -> None:
        self.detokenizer: IncrementalDetokenizer = ctx.side["TOKENIZER"].detokenizer()
        self.stops = StopStringFilter(())
        self.finished = False

    def process(self, ctx: CalculatorContext) -> None:
        request: LLMRequest | None = ctx.value(self.REQUEST)
        if request is not None:
            self.stops = StopStringFilter(request.body.stop_strings, request.body.include_stop_str_in_output)
        delta: GenerationDelta | None = ctx.value(self.DELTAS)
        if delta is None or self.finished:
            return
        text, stopped = self.stops.push(self.detokenizer.push(delta.token_ids))
        finish = "stop" if stopped else delta.finish
        if finish is not None:
            self.finished = True
            if not stopped:
                text += self.stops.flush()
            finish = "length" if finish == "length" else "stop"
        if text or finish is not None:
            ctx.send(self.TEXT, TextDelta(text, finish, delta.prompt_tokens, delta.completion_tokens))
