"""Parse reasoning: the ``<think>…</think>`` part of an answer → ``reasoning_content``, the rest → content.

Models that think (Qwen3, DeepSeek-R1 and their kin) write their reasoning first, between ``<think>``
and ``</think>`` (the opening tag may be in the prompt instead, put there by the chat template). The
format is chosen like the tool-call format: OVMS's ``reasoning_parser`` option (``qwen3``; ``none``
turns it off), ``ovserve serve --reasoning-parser``, or a chat template that mentions ``<think>``.
"""

from __future__ import annotations

from dataclasses import replace

from ovserve import Calculator, CalculatorContext, Input, Output
from ovserve.calculators.llm.markers import split_before_partial_marker
from ovserve.calculators.llm.types import Prompt, RequestPlan, TextDelta
from ovserve.engine.tokenizer import TextTokenizer

OPEN, CLOSE = "<think>", "</think>"
#: OVMS's reasoning parser names that mean this format.
THINK_PARSERS = frozenset({"qwen3", "deepseek_r1"})


def choose_reasoning(option: str | None, chat_template: str) -> tuple[str | None, str | None]:
    """(the reasoning format, or ``None``; an asked-for format ovserve does not have, or ``None``)."""
    if option is None:
        return ("qwen3" if OPEN in chat_template else None), None
    if option == "none":
        return None, None
    return (option, None) if option in THINK_PARSERS else (None, option)


def opens_reasoning(tokenizer: TextTokenizer) -> bool:
    """Whether the model's chat template ends its generation prompt with ``<think>`` (as DeepSeek-R1's does), so
    that answers begin inside the reasoning; rendered once, at load. ``True`` when it cannot be told (the cautious
    reading: answers are then held until ``</think>`` or their end)."""
    try:
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    except Exception:  # a template that needs more than one user message: keep the cautious reading
        return True
    return prompt.rstrip().endswith(OPEN)


class ReasoningSplitter:
    """One choice's text as it streams → (reasoning, content) pieces.

    An answer that opens with ``<think>`` streams its reasoning, then its content. One that does not is content,
    streamed as it comes, unless the template may have opened the tag in the prompt (``opened``): then it may
    still be reasoning, and is held until ``</think>`` shows it was (the part before it is reasoning) or the
    answer ends without one (it is all content)."""

    def __init__(self, opened: bool = True) -> None:
        self.state = "start"  # start → reasoning → content; start → undecided → content; start → content
        self.opened = opened
        self.pending = ""

    def push(self, text: str) -> tuple[str, str]:
        text, self.pending = self.pending + text, ""
        if self.state == "start":
            stripped = text.lstrip()
            if OPEN.startswith(stripped) and len(stripped) < len(OPEN):
                self.pending = text  # could still be the opening tag
                return "", ""
            if stripped.startswith(OPEN):
                text, self.state = stripped[len(OPEN):], "reasoning"
            else:
                self.state = "undecided" if self.opened else "content"
        if self.state == "content_start":  # drop the blank lines between </think> and the content
            text = text.lstrip("\n")
            if not text:
                return "", ""
            self.state = "content"
        if self.state == "content":
            return "", text
        before, found, after = text.partition(CLOSE)
        if found:
            self.state = "content_start"
            return before, self.push(after)[1]
        if self.state == "undecided":
            self.pending = text
            return "", ""
        reasoning, self.pending = split_before_partial_marker(text, (CLOSE,))
        return reasoning, ""

    def finish(self) -> tuple[str, str]:
        """(reasoning, content) still held when the answer ends."""
        rest, self.pending = self.pending, ""
        return (rest, "") if self.state == "reasoning" else ("", rest)


class ReasoningParserCalculator(Calculator):
    """Splits each choice's text into ``reasoning`` and content, for chat answers of models that think;
    everything else passes straight through."""

    PROMPT = Input(Prompt, doc="its plan: whether the answer is parsed (chat answers of a model that reasons, "
                               "unless thinking is off) and whether it begins inside the reasoning")
    TEXT = Input(TextDelta, doc="the detokenized answer")
    PARSED = Output(TextDelta, doc="content in text, reasoning in reasoning")

    def open(self, ctx: CalculatorContext) -> None:
        self.plan = RequestPlan()
        self.splitters: dict[int, ReasoningSplitter] = {}

    def process(self, ctx: CalculatorContext) -> None:
        prompt: Prompt | None = ctx.value(self.PROMPT)
        if prompt is not None:
            self.plan = prompt.plan
        delta: TextDelta | None = ctx.value(self.TEXT)
        if delta is None:
            return
        if not self.plan.reasoning:
            ctx.send(self.PARSED, delta)
            return
        splitter = self.splitters.setdefault(delta.index, ReasoningSplitter(self.plan.reasoning_opened))
        reasoning, content = splitter.push(delta.text)
        if delta.finish_reason is not None:
            more_reasoning, more_content = splitter.finish()
            reasoning, content = reasoning + more_reasoning, content + more_content
        if reasoning or content or delta.finish_reason is not None or delta.logprobs:
            ctx.send(self.PARSED, replace(delta, text=content, reasoning=reasoning))
