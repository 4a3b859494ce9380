"""An example calculator: replace listed words in a stream of text."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from ovserve import Calculator, CalculatorContext, Input, Output


class RedactOptions(BaseModel):
    """Options of :class:`RedactCalculator`, written in the graph as
    ``node_options { [type.googleapis.com/ovserve.RedactOptions] { words: "secret" replacement: "***" } }``."""

    model_config = ConfigDict(extra="forbid")
    words: list[str] = Field(min_length=1, description="words to hide (whole words, any case)")
    replacement: str = "[redacted]"


class RedactCalculator(Calculator):
    """Replaces every listed word in each TEXT packet and counts how many it replaced."""

    TEXT = Input(str, doc="text to clean")
    REDACTED = Output(str, doc="the text with the listed words replaced")
    COUNT = Output(int, doc="how many words were replaced in this packet")

    Options = RedactOptions
    options_type = "ovserve.RedactOptions"

    def open(self, ctx: CalculatorContext) -> None:
        words = "|".join(re.escape(word) for word in ctx.options.words)
        self.pattern = re.compile(rf"\b(?:{words})\b", re.IGNORECASE)

    def process(self, ctx: CalculatorContext) -> None:
        text, count = self.pattern.subn(ctx.options.replacement, ctx.value(self.TEXT))
        ctx.send(self.REDACTED, text)
        ctx.send(self.COUNT, count)
