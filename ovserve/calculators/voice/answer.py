"""The speaking end of a voice graph: the chat answer the LLM nodes serialize → the same answer in speech.

:class:`SpeakAnswerCalculator` reads the ``serialize`` node's output. A request that asked for no audio passes
through unchanged. Otherwise, as OpenAI's audio chat API answers: unary, ``choices[0].message.audio`` holds ``id``,
``data`` (the whole file in base64), ``transcript`` (the text) and ``expires_at``, and ``content`` is null; streamed,
the text comes as ``delta.audio.transcript`` and the speech as ``delta.audio.data`` chunks (base64 pieces of one
file, in order), each sentence's as soon as it is spoken, while the LLM is still writing the next.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from ovserve import Calculator, CalculatorContext, Input, Output, SideInput
from ovserve.calculators.llm.response import DONE, EVENT_STREAM
from ovserve.calculators.speech.encode import AudioEncoder
from ovserve.calculators.speech.model import TtsModel
from ovserve.calculators.speech.sentences import SentenceSplitter, split_sentences
from ovserve.calculators.speech.synthesize import speak
from ovserve.calculators.voice.listen import SpokenAnswer
from ovserve.payloads import HttpResponsePayload

#: How long an answer's audio is said to stay available (OpenAI keeps it for multi-turn use; ovserve keeps
#: nothing, so a client sending its id back gets nothing more than the transcript it already has).
EXPIRES_AFTER = 3600


def sse(event: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


def events_of(body: bytes) -> list[dict[str, Any] | None]:
    """The JSON events of a piece of an SSE stream (``None`` for ``[DONE]``)."""
    events: list[dict[str, Any] | None] = []
    for block in body.split(b"\n\n"):
        if block.startswith(b"data: "):
            data = block[len(b"data: "):]
            events.append(None if data.strip() == b"[DONE]" else json.loads(data))
    return events


class Speaker:
    """One streamed answer's speech: sentences in as the text completes them, encoded chunks out as each is
    spoken (in a task of its own, so that speaking runs while the LLM writes)."""

    def __init__(self, model: TtsModel, answer: SpokenAnswer) -> None:
        self.model, self.answer = model, answer
        self.splitter = SentenceSplitter(model.max_sentence_chars)
        self.sentences: asyncio.Queue[str | None] = asyncio.Queue()
        self.chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self.task = asyncio.ensure_future(self.run())

    def add(self, text: str) -> None:
        for sentence in self.splitter.add(text):
            self.sentences.put_nowait(sentence)

    async def _sentences(self) -> AsyncIterator[str]:
        while (sentence := await self.sentences.get()) is not None:
            yield sentence

    async def run(self) -> None:
        encoder: AudioEncoder | None = None
        speeches = speak(self.model, self._sentences(), self.answer.voice)
        try:
            async for speech in speeches:
                if encoder is None:
                    encoder = AudioEncoder(self.answer.format, speech.sample_rate, stream=True)
                chunk = await asyncio.to_thread(encoder.add, speech.samples)
                if chunk:
                    self.chunks.put_nowait(chunk)
            if encoder is not None:
                rest = await asyncio.to_thread(encoder.finish)
                if rest:
                    self.chunks.put_nowait(rest)
        finally:
            if encoder is not None:
                encoder.close()
            await speeches.aclose()  # type: ignore[attr-defined]

    def ready(self) -> list[bytes]:
        """The chunks spoken and encoded so far."""
        chunks = []
        while not self.chunks.empty():
            chunks.append(self.chunks.get_nowait())
        return chunks

    async def rest(self) -> AsyncIterator[bytes]:
        """The rest of the speech, each chunk as soon as it is encoded, until every sentence is spoken."""
        for sentence in self.splitter.flush():
            self.sentences.put_nowait(sentence)
        self.sentences.put_nowait(None)
        while True:
            getter = asyncio.ensure_future(self.chunks.get())
            done, _ = await asyncio.wait({getter, self.task}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                yield getter.result()
                continue
            getter.cancel()
            await self.task  # raises what failed
            for chunk in self.ready():
                yield chunk
            return

    async def close(self) -> None:
        if not self.task.done():
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task


class SpeakAnswerCalculator(Calculator):
    """Called for each piece of a voice graph's chat answer (after ``serialize``), with VOICE (what the request asked
    for) first. Passes text answers on unchanged; speaks the others in the asked voice and format, as OpenAI's audio
    chat API shapes them: ``message.audio`` when unary, ``delta.audio`` chunks when streamed."""

    VOICE = Input(SpokenAnswer, doc="the audio output the request asks for (or none)")
    ANSWER = Input(HttpResponsePayload, doc="the serialized chat answer: JSON, or a piece of its SSE stream")
    SPEECH = SideInput(TtsModel)
    HTTP_RESPONSE_PAYLOAD = Output(HttpResponsePayload)

    def open(self, ctx: CalculatorContext) -> None:
        self.answer: SpokenAnswer | None = None
        self.speaker: Speaker | None = None
        self.audio_id = f"audio_{uuid.uuid4().hex}"
        self.envelope: dict[str, Any] = {}
        self.held = False

    async def process(self, ctx: CalculatorContext) -> None:
        answer = ctx.value(self.VOICE)
        if answer is not None:
            self.answer = answer
        payload: HttpResponsePayload | None = ctx.value(self.ANSWER)
        if payload is None:
            return
        if self.answer is None or not self.answer.wanted or payload.status != 200:
            await ctx.send(self.HTTP_RESPONSE_PAYLOAD, payload)
            return
        model: TtsModel = ctx.side["SPEECH"]
        if not self.held:
            model.hold()
            self.held = True
        if payload.content_type.startswith(EVENT_STREAM):
            await self.stream(ctx, model, payload)
        else:
            await ctx.send(self.HTTP_RESPONSE_PAYLOAD, await self.whole(model, payload))

    async def whole(self, model: TtsModel, payload: HttpResponsePayload) -> HttpResponsePayload:
        """The unary answer with its text spoken into ``message.audio``."""
        assert self.answer is not None
        response = json.loads(payload.body)
        for choice in response.get("choices", []):
            message = choice.get("message") or {}
            text = message.get("content") or ""
            if not text.strip():
                continue
            data = await spoken_file(model, self.answer, text)
            message["audio"] = {"id": self.audio_id, "data": base64.b64encode(data).decode(),
                                "expires_at": int(time.time()) + EXPIRES_AFTER, "transcript": text}
            message["content"] = None
        return HttpResponsePayload(json.dumps(response).encode(), log=payload.log)

    async def stream(self, ctx: CalculatorContext, model: TtsModel, payload: HttpResponsePayload) -> None:
        """A piece of the SSE stream: text moved into ``delta.audio.transcript``, the speech spoken so far sent as
        ``delta.audio.data`` chunks, and the rest of it, chunk by chunk as it is spoken, before the chunk that
        finishes the choice."""
        if self.speaker is None:
            assert self.answer is not None
            self.speaker = Speaker(model, self.answer)
        out = b""
        for event in events_of(payload.body):
            if event is None:
                out += DONE
                continue
            choices = event.get("choices") or []
            if not choices:  # the usage chunk
                out += sse(event)
                continue
            self.envelope = {key: event[key] for key in ("id", "object", "created", "model", "system_fingerprint")
                             if key in event}
            choice = choices[0]
            delta = choice.get("delta") or {}
            text = delta.pop("content", None)
            if text:
                self.speaker.add(text)
                delta["audio"] = {"id": self.audio_id, "transcript": text}
            finish = choice.get("finish_reason")
            if finish is None:
                out += sse(event) + self.audio_events(self.speaker.ready())
                continue
            choice["finish_reason"] = None
            await self.send_piece(ctx, out + (sse(event) if delta else b""))
            out = b""
            async for chunk in self.speaker.rest():
                await self.send_piece(ctx, self.audio_events([chunk]))
            out += self.audio_events([], expires=True)
            out += sse({**self.envelope, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        await self.send_piece(ctx, out, payload)

    async def send_piece(self, ctx: CalculatorContext, body: bytes, last: HttpResponsePayload | None = None) -> None:
        """A piece of the stream (``last``: the serializer's piece it stands for, when it ends the stream)."""
        if body or (last is not None and last.last):
            await ctx.send(self.HTTP_RESPONSE_PAYLOAD, HttpResponsePayload(
                body, content_type=EVENT_STREAM, last=last is not None and last.last,
                log=last.log if last is not None else None))

    def audio_events(self, chunks: list[bytes], expires: bool = False) -> bytes:
        """``delta.audio.data`` chunks (and, at the end, the one with ``expires_at``)."""
        audios: list[dict[str, Any]] = [{"id": self.audio_id, "data": base64.b64encode(chunk).decode()}
                                        for chunk in chunks]
        if expires:
            audios.append({"id": self.audio_id, "expires_at": int(time.time()) + EXPIRES_AFTER})
        return b"".join(sse({**self.envelope, "choices": [{"index": 0, "delta": {"audio": audio},
                                                              "finish_reason": None}]}) for audio in audios)

    async def close(self, ctx: CalculatorContext) -> None:
        if self.speaker is not None:
            await self.speaker.close()
        if self.held:
            ctx.side["SPEECH"].release()


async def spoken_file(model: TtsModel, answer: SpokenAnswer, text: str) -> bytes:
    """``text`` spoken whole, as one file in the asked format."""
    encoder: AudioEncoder | None = None
    speeches = speak(model, split_sentences(text, model.max_sentence_chars), answer.voice)
    try:
        async for speech in speeches:
            if encoder is None:
                encoder = AudioEncoder(answer.format, speech.sample_rate, stream=False)
            await asyncio.to_thread(encoder.add, speech.samples)
        return b"" if encoder is None else await asyncio.to_thread(encoder.finish)
    finally:
        if encoder is not None:
            encoder.close()
        await speeches.aclose()  # type: ignore[attr-defined]
