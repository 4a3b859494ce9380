"""Detokenize: token ids → text deltas, UTF-8 safe, cut exactly before a stop string."""

from __future__ import annotations

from ovserve import Calculator, CalculatorContext, Input, Output, SideInput
from ovserve.calculators.llm.markers import split_before_partial_marker
from ovserve.calculators.llm.types import GenerationDelta, ModelParsers, Prompt, TextDelta, TokenLogprob
from ovserve.engine.scorer import TokenScore
from ovserve.engine.tokenizer import IncrementalDetokenizer, TextTokenizer
from ovserve.engine.vocabulary import ByteTableDetokenizer


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
        text, self.held = split_before_partial_marker(text, self.stops)
        return text, False

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held


class DetokenizerCalculator(Calculator):
    """Streams text as tokens arrive; never splits a character, never shows part of a stop string."""

    DELTAS = Input(GenerationDelta)
    PROMPT = Input(Prompt, doc="its plan: the stop strings, and the prompts' text for echo")
    TOKENIZER = SideInput(TextTokenizer)
    PARSERS = SideInput(ModelParsers, optional=True, doc="special tokens the parsers need to see as text")
    TEXT = Output(TextDelta)

    def open(self, ctx: CalculatorContext) -> None:
        self.tokenizer: TextTokenizer = ctx.side["TOKENIZER"]
        parsers: ModelParsers | None = ctx.side.get("PARSERS")
        self.markers = dict(parsers.marker_tokens) if parsers else {}
        self.prompt: Prompt | None = None
        self.choices: dict[int, _ChoiceText] = {}

    def process(self, ctx: CalculatorContext) -> None:
        prompt: Prompt | None = ctx.value(self.PROMPT)
        if prompt is not None:
            self.prompt = prompt
        delta: GenerationDelta | None = ctx.value(self.DELTAS)
        if delta is None:
            return
        choice = self.choices.get(delta.index)
        if choice is None:
            choice = self.choices[delta.index] = self.start_choice(delta.index)
        if choice.finished:
            return
        text, stopped = choice.stops.push(self.decode(choice, delta.token_ids))
        if choice.echo:
            text, choice.echo = choice.echo + text, ""
        finish = "stop" if stopped else delta.finish
        if finish is not None:
            choice.finished = True
            if not stopped:
                text += choice.stops.flush()
            finish = "length" if finish == "length" else "stop"
        logprobs = None
        if delta.logprobs is not None:
            logprobs = tuple(map(self.token_logprob, (*(delta.prompt_logprobs or ()), *delta.logprobs)))
        if text or finish is not None or logprobs:
            ctx.send(self.TEXT, TextDelta(text, finish, delta.prompt_tokens, delta.completion_tokens, delta.index,
                                          logprobs))

    def decode(self, choice: _ChoiceText, token_ids: tuple[int, ...]) -> str:
        """The text of new tokens, with the parsers' special-token markers written out where they are."""
        if not self.markers or self.markers.keys().isdisjoint(token_ids):
            return choice.detokenizer.push(token_ids)
        text, start = "", 0
        for index, token in enumerate(token_ids):
            if token in self.markers:
                text += choice.detokenizer.push(token_ids[start:index + 1]) + self.markers[token]
                start = index + 1
        return text + choice.detokenizer.push(token_ids[start:])

    def token_logprob(self, score: TokenScore) -> TokenLogprob:
        """A scored token id as the answer shows it, with its alternatives."""
        raw = self.tokenizer.token_bytes(score.token_id)
        top = tuple(TokenLogprob(alternative.decode(errors="replace"), logprob, alternative, token_id=i)
                    for i, alternative, logprob in ((i, self.tokenizer.token_bytes(i), lp) for i, lp in score.top))
        return TokenLogprob(raw.decode(errors="replace"), score.logprob, raw, top, score.token_id)

    def start_choice(self, index: int) -> _ChoiceText:
        """Choice ``index``'s decoding state, with its stop strings and (echo) its prompt's text still to send."""
        if self.prompt is None:
            return _ChoiceText(self.tokenizer.detokenizer(), StopStringFilter(()))
        plan = self.prompt.plan
        choice = _ChoiceText(self.tokenizer.detokenizer(), StopStringFilter(plan.stops, plan.include_stop))
        if plan.echo:
            choice.echo = plan.echo[index // self.prompt.n]
        return choice


class _ChoiceText:
    """One choice's decoding state."""

    __slots__ = ("detokenizer", "echo", "finished", "stops")

    def __init__(self, detokenizer: IncrementalDetokenizer | ByteTableDetokenizer, stops: StopStringFilter) -> None:
        self.detokenizer = detokenizer
        self.stops = stops
        self.finished = False
        #: The prompt, still to be put in front of the text (completions' echo).
        self.echo = ""
