"""The speaking node of any graph: text in, one packet of speech per sentence out, as each is spoken.

Where the speech endpoint (:mod:`.calculator`) answers an HTTP request, this node speaks inside a graph: a voice graph
feeds it the sentences an LLM writes, as they complete (:class:`~.sentences.SentenceSplitter` over the LLM's text),
and encodes what it gives (:class:`~.encode.AudioEncoder`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ovserve import Calculator, CalculatorContext, Input, Output, SideInput
from ovserve.calculators.speech.model import DEFAULT_VOICE, TtsModel
from ovserve.calculators.speech.sentences import split_sentences
from ovserve.calculators.speech.synthesize import Speech, speak


class SpeakOptions(BaseModel):
    """Whose voice the node speaks in, and in what language (models that read one: Kokoro)."""

    model_config = ConfigDict(extra="forbid")

    voice: str = Field(DEFAULT_VOICE, description="a voice (or alias) of the speech model")
    language: str | None = Field(None, description="the language, for models that read one (Kokoro)")


class SpeakCalculator(Calculator):
    """Speaks each TEXT packet (a sentence, or any text, which it splits into sentences) in the model's voice
    ``voice``, and sends each sentence's speech on AUDIO as soon as it is spoken, in order. Within a packet the engine
    goes from one sentence straight to the next; feed it sentences as they complete to speak while the text is still
    being written. The voice is checked when the node opens (an unknown one fails the request, listing the known)."""

    TEXT = Input(str, doc="text to speak: a sentence, or more")
    SPEECH = SideInput(TtsModel)
    AUDIO = Output(Speech, doc="a sentence's speech: its text, float32 samples and sample rate")

    Options = SpeakOptions
    options_type = "ovserve.SpeakOptions"

    def open(self, ctx: CalculatorContext) -> None:
        model: TtsModel = ctx.side["SPEECH"]
        self.voice = model.voice(ctx.options.voice)

    async def process(self, ctx: CalculatorContext) -> None:
        model: TtsModel = ctx.side["SPEECH"]
        sentences = split_sentences(ctx.value(self.TEXT), model.max_sentence_chars)
        speeches = speak(model, sentences, self.voice, ctx.options.language)
        try:
            async for speech in speeches:
                await ctx.send(self.AUDIO, speech)
        finally:
            await speeches.aclose()  # type: ignore[attr-defined]
