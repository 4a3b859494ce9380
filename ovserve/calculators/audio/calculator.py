"""The speech-to-text node: an OpenAI transcription or translation form in, the response (or its events) out."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from ovserve import Calculator, CalculatorContext, Input, Output, SideInput
from ovserve.calculators.audio.decode import ACCEPTED, decode_audio
from ovserve.calculators.audio.model import SpeechModel
from ovserve.calculators.audio.schema import IGNORED_BY_DESIGN, TranscriptionForm, TranslationForm
from ovserve.calculators.audio.transcript import Segment, Transcript, TranscriptStream, Word, render
from ovserve.calculators.llm.request_fields import log_ignored
from ovserve.endpoints import not_served
from ovserve.engine.whisper_kind import TranscribeJob, WhisperResult
from ovserve.errors import RequestError
from ovserve.payloads import HttpRequestPayload, HttpResponsePayload

#: What the node answers, by the end of the path.
ENDPOINTS = ("/audio/transcriptions", "/audio/translations")


class SpeechToTextCalculator(Calculator):
    """``/audio/transcriptions`` and ``/audio/translations``: validates the form, decodes the uploaded ``file`` (in a
    thread), runs Whisper in its engine process, and writes the response in the asked ``response_format``; a
    streamed transcription sends ``transcript.text.delta`` events as Whisper writes, then ``transcript.text.done``.
    Everything is checked before the engine sees the request; a client that goes away cancels its call."""

    HTTP_REQUEST_PAYLOAD = Input(HttpRequestPayload, doc="the HTTP request: its form's text fields and its file")
    WHISPER = SideInput(SpeechModel)
    HTTP_RESPONSE_PAYLOAD = Output(HttpResponsePayload)

    async def process(self, ctx: CalculatorContext) -> None:
        payload: HttpRequestPayload = ctx.value(self.HTTP_REQUEST_PAYLOAD)
        model: SpeechModel = ctx.side["WHISPER"]
        if not payload.uri.endswith(ENDPOINTS):
            raise not_served(payload.uri, payload.model, "a speech-to-text model", ENDPOINTS)
        translate = payload.uri.endswith("/audio/translations")
        form = (TranslationForm if translate else TranscriptionForm).from_fields(payload.json)
        log_ignored(form, IGNORED_BY_DESIGN)
        job_fields = self.check(form, model, translate)
        upload = uploaded_file(payload)
        model.hold()  # counted from here: the decoded audio is held until the engine is done with it
        try:
            audio = await asyncio.to_thread(decode_audio, upload, model.limits)
            duration, job = audio.duration, TranscribeJob(audio.samples.tobytes(), **job_fields)
            del audio  # the job holds the samples' bytes: not the array too
            if isinstance(form, TranscriptionForm) and form.stream:
                async for event in self.stream(model, job):
                    await ctx.send(self.HTTP_RESPONSE_PAYLOAD, event)
                return
            result: WhisperResult = await model.engine.call(job)
        finally:
            model.release()
        body = render(transcript_of(result, duration, form, translate), form.response_format,
                      form.granularities if isinstance(form, TranscriptionForm) else frozenset({"segment"}))
        data = json.dumps(body.body, ensure_ascii=False).encode() if isinstance(body.body, dict) else body.body.encode()
        ctx.send(self.HTTP_RESPONSE_PAYLOAD, HttpResponsePayload(data, content_type=body.media_type,
                                                                 log={"completion_tokens": result.output_tokens}))

    @staticmethod
    def check(form: TranscriptionForm | TranslationForm, model: SpeechModel, translate: bool) -> dict[str, Any]:
        """The job's settings from the form, once the model is known to do what it asks (a 400 naming the field
        otherwise)."""
        language = form.language if isinstance(form, TranscriptionForm) else None
        if language is not None and model.languages is None and language != "en":
            raise RequestError(f"this model is English-only: language '{language}' cannot be transcribed; leave "
                               f"'language' out or set it to 'en'", param="language", code="unsupported_language")
        if language is not None and model.languages is not None and language not in model.languages:
            raise RequestError(f"this model does not know language '{language}'; it knows "
                               f"{', '.join(sorted(model.languages))}", param="language", code="unsupported_language")
        if translate and not model.translates:
            raise RequestError("this model cannot translate (an English-only Whisper); use /audio/transcriptions",
                               param="model", code="unsupported_model")
        granularities = form.granularities if isinstance(form, TranscriptionForm) else frozenset()
        if "word" in granularities and not model.word_timestamps:
            raise RequestError("word timestamps are off for this model: serve it with enable_word_timestamps: true "
                               "(a graph option) to ask for them", param="timestamp_granularities",
                               code="unsupported_parameter")
        timed = form.response_format in ("srt", "vtt", "verbose_json") and "segment" in (granularities or {"segment"})
        return {"task": "translate" if translate else "transcribe",
                "language": None if model.languages is None else language, "prompt": form.prompt,
                "temperature": form.temperature, "timestamps": timed or "word" in granularities,
                "words": "word" in granularities,
                "stream": isinstance(form, TranscriptionForm) and form.stream}

    @staticmethod
    async def stream(model: SpeechModel, job: TranscribeJob) -> AsyncIterator[HttpResponsePayload]:
        """The events of a streamed transcription: a delta per piece of text Whisper's streamer gives, then the done
        event with the whole text (OpenAI's done event carries token usage, which GenAI does not count: left out)."""
        events = TranscriptStream()
        async for piece in model.engine.submit(job).partials():
            if isinstance(piece, WhisperResult):
                yield HttpResponsePayload(events.done(piece.text).encode(), content_type="text/event-stream",
                                          log={"completion_tokens": piece.output_tokens})
                return
            event = events.delta(piece) if isinstance(piece, str) else None
            if event is not None:
                yield HttpResponsePayload(event.encode(), content_type="text/event-stream", last=False)


def uploaded_file(payload: HttpRequestPayload) -> bytes:
    """The form's ``file`` part; a 400 naming ``file`` when there is none."""
    upload = payload.files.get("file")
    if upload is None:
        sent = ", ".join(payload.files) or "none"
        raise RequestError(f"the form has no 'file' part with the audio (files sent: {sent}); accepted audio "
                           f"formats: {ACCEPTED}", param="file", code="missing_required_parameter")
    return upload[2]


def transcript_of(result: WhisperResult, duration: float, form: TranscriptionForm | TranslationForm,
                  translate: bool) -> Transcript:
    """The engine's result as the transcript the response formats are written from (``duration``: the audio's, in
    seconds)."""
    return Transcript(
        text=result.text, duration=duration, language=result.language or getattr(form, "language", None),
        task="translate" if translate else "transcribe", temperature=form.temperature,
        segments=tuple(Segment(start, end, text) for start, end, text in result.segments),
        words=None if result.words is None else tuple(Word(word, start, end) for word, start, end in result.words),
    )
