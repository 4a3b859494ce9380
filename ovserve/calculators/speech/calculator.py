"""The text-to-speech node: an OpenAI speech request in, the audio (whole, streamed, or as events) out."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

from ovserve import Calculator, CalculatorContext, Input, Output, SideInput
from ovserve.calculators.llm.request_fields import log_ignored
from ovserve.calculators.speech.encode import AudioEncoder
from ovserve.calculators.speech.model import TtsModel
from ovserve.calculators.speech.schema import IGNORED_BY_DESIGN, SpeechRequest
from ovserve.calculators.speech.sentences import split_sentences
from ovserve.calculators.speech.synthesize import Speech, speak
from ovserve.endpoints import not_served
from ovserve.errors import RequestError
from ovserve.payloads import HttpRequestPayload, HttpResponsePayload

#: What the node answers, by the end of the path.
ENDPOINT = "/audio/speech"
SSE = "text/event-stream"


class TextToSpeechCalculator(Calculator):
    """``/audio/speech``: validates the request against the model (voice, bounds), splits the input into sentences,
    has the engine speak them one after another, and encodes the speech in the asked ``response_format``: the whole
    file at the end, or, with ``stream_format``, each sentence's audio as soon as it is spoken (raw chunks with
    ``audio``, ``speech.audio.delta`` events with ``sse``, then ``speech.audio.done``). Everything is checked before
    the engine sees the request; a client that goes away stops its speech at the next sentence."""

    HTTP_REQUEST_PAYLOAD = Input(HttpRequestPayload, doc="the HTTP request: OpenAI's speech request as JSON")
    SPEECH = SideInput(TtsModel)
    HTTP_RESPONSE_PAYLOAD = Output(HttpResponsePayload)

    async def process(self, ctx: CalculatorContext) -> None:
        payload: HttpRequestPayload = ctx.value(self.HTTP_REQUEST_PAYLOAD)
        model: TtsModel = ctx.side["SPEECH"]
        if not payload.uri.endswith(ENDPOINT):
            raise not_served(payload.uri, payload.model, "a text-to-speech model", (ENDPOINT,))
        request = SpeechRequest.parse(payload.json)
        log_ignored(request, IGNORED_BY_DESIGN)
        voice = self.check(request, model)
        sentences = split_sentences(request.input, model.max_sentence_chars)
        model.hold()
        try:
            speeches = speak(model, sentences, voice, request.language)
            if request.stream_format is None:
                data, media_type, tokens = await whole_file(speeches, request)
                ctx.send(self.HTTP_RESPONSE_PAYLOAD, HttpResponsePayload(data, content_type=media_type,
                                                                         log={"prompt_tokens": tokens}))
                return
            async for piece in streamed(speeches, request):
                await ctx.send(self.HTTP_RESPONSE_PAYLOAD, piece)
        finally:
            model.release()

    @staticmethod
    def check(request: SpeechRequest, model: TtsModel) -> str | None:
        """The engine voice the request asks for, once its input, speed and language are known to be within what
        the model takes (a 400 naming the field otherwise)."""
        if len(request.input) > model.max_input_chars:
            raise RequestError(f"the input is {len(request.input)} characters long; the limit is "
                               f"{model.max_input_chars}: send the text in parts", param="input",
                               code="string_above_max_length")
        low, high = model.speed_range
        if not low <= request.speed <= high:
            raise RequestError(f"speed {request.speed:g} is out of this model's range: from {low:g} to {high:g}",
                               param="speed", code="invalid_value")
        if request.language is not None and model.model_type == "speecht5" \
                and not request.language.lower().startswith("en"):
            raise RequestError(f"this model (SpeechT5) speaks English only: language '{request.language}' cannot be "
                               f"honoured; leave it out", param="language", code="unsupported_language")
        return model.voice(request.voice_name)


async def whole_file(speeches: AsyncIterator[Speech], request: SpeechRequest) -> tuple[bytes, str, int]:
    """Every sentence's speech encoded as one file: its bytes, its content type and the input tokens read."""
    encoder: AudioEncoder | None = None
    tokens = 0
    try:
        async for speech in speeches:
            if encoder is None:
                encoder = AudioEncoder(request.response_format, speech.sample_rate, request.speed, stream=False)
            await asyncio.to_thread(encoder.add, speech.samples)
            tokens += speech.input_tokens
        if encoder is None:  # never reached: the input has something to say
            raise RequestError("the input has nothing to say", param="input", code="invalid_value")
        return await asyncio.to_thread(encoder.finish), encoder.media_type, tokens
    finally:
        if encoder is not None:
            encoder.close()
        await speeches.aclose()  # type: ignore[attr-defined]


async def streamed(speeches: AsyncIterator[Speech], request: SpeechRequest) -> AsyncIterator[HttpResponsePayload]:
    """Each sentence's audio as it is spoken: raw chunks of the file (``stream_format: audio``), or
    ``speech.audio.delta`` events carrying them in base64 and a last ``speech.audio.done`` (``sse``)."""
    events = request.stream_format == "sse"
    encoder: AudioEncoder | None = None
    tokens = 0
    try:
        async for speech in speeches:
            if encoder is None:
                encoder = AudioEncoder(request.response_format, speech.sample_rate, request.speed, stream=True)
            tokens += speech.input_tokens
            chunk = await asyncio.to_thread(encoder.add, speech.samples)
            if chunk:
                yield HttpResponsePayload(delta_event(chunk) if events else chunk,
                                          content_type=SSE if events else encoder.media_type, last=False)
        if encoder is None:
            raise RequestError("the input has nothing to say", param="input", code="invalid_value")
        rest = await asyncio.to_thread(encoder.finish)
        if events:
            body = (delta_event(rest) if rest else b"") + done_event(tokens)
            yield HttpResponsePayload(body, content_type=SSE, log={"prompt_tokens": tokens})
        else:
            yield HttpResponsePayload(rest, content_type=encoder.media_type, log={"prompt_tokens": tokens})
    finally:
        if encoder is not None:
            encoder.close()
        await speeches.aclose()  # type: ignore[attr-defined]


def sse(event: dict[str, Any]) -> bytes:
    """One server-sent event: ``data: {json}`` and a blank line."""
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


def delta_event(chunk: bytes) -> bytes:
    """OpenAI's ``speech.audio.delta``: a chunk of the audio file, in base64."""
    return sse({"type": "speech.audio.delta", "audio": base64.b64encode(chunk).decode()})


def done_event(input_tokens: int) -> bytes:
    """OpenAI's ``speech.audio.done``, with usage: the input's tokens as the model read them (0 when it does not
    say), and no output tokens (GenAI does not count its decoder's steps)."""
    return sse({"type": "speech.audio.done",
                "usage": {"input_tokens": input_tokens, "output_tokens": 0, "total_tokens": input_tokens}})
