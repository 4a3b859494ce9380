"""The listening end of a voice graph: a chat request's ``input_audio`` parts → text, and its audio output asked for.

:class:`ListenCalculator` runs before the LLM graph's ``deserialize`` node. It takes ``modalities`` and ``audio``
out of the request (the speaking node honours them; the LLM nodes refuse them), checks them against the speech
model, transcribes every ``input_audio`` part with the speech-to-text model and puts the transcript in its place as a
text part. Everything is checked before any engine sees the request: a 400 names the field otherwise.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
from dataclasses import dataclass
from typing import Any

from ovserve import Calculator, CalculatorContext, Input, Output, SideInput
from ovserve.calculators.audio.decode import decode_audio, sniff_format
from ovserve.calculators.audio.model import SpeechModel
from ovserve.calculators.speech.model import TtsModel
from ovserve.engine.whisper_kind import TranscribeJob, WhisperResult
from ovserve.errors import RequestError
from ovserve.payloads import HttpRequestPayload

#: OpenAI's audio output formats, and the speech endpoint's format each is encoded as.
AUDIO_FORMATS = {"wav": "wav", "mp3": "mp3", "flac": "flac", "opus": "opus", "aac": "aac", "pcm16": "pcm"}
#: The formats OpenAI takes in ``input_audio`` parts.
INPUT_FORMATS = ("wav", "mp3")
#: The most ``input_audio`` parts one request may hold.
MAX_AUDIO_PARTS = 16


@dataclass(frozen=True)
class SpokenAnswer:
    """What a chat request asks of the speaking node: ``voice`` (an engine voice name; ``None``: the model's
    built-in speaker) and ``format`` (a speech endpoint format: wav, mp3, flac, opus, aac, pcm), or no speech
    (``wanted`` false: the answer is text, passed on as the LLM nodes write it)."""

    wanted: bool
    voice: str | None = None
    format: str = "wav"
    stream: bool = False


def spoken_answer(body: dict[str, Any], speech: TtsModel) -> SpokenAnswer:
    """The audio output a chat request asks for (``modalities`` and ``audio``), checked against the speech model."""
    modalities = body.get("modalities")
    if modalities is not None and (not isinstance(modalities, list) or not modalities
                                   or not set(modalities) <= {"text", "audio"}):
        raise RequestError(f"Invalid value for 'modalities': expected [\"text\"] or [\"text\", \"audio\"] (got "
                           f"{modalities!r})", param="modalities", code="invalid_value")
    audio = body.get("audio")
    if modalities is None or "audio" not in modalities:
        if audio is not None:
            raise RequestError("'audio' is set but 'modalities' does not ask for audio: add \"audio\" to "
                               "'modalities', or leave 'audio' out", param="audio", code="invalid_value")
        return SpokenAnswer(False)
    if not isinstance(audio, dict):
        raise RequestError("'modalities' asks for audio: 'audio' must be an object with 'voice' and 'format'",
                           param="audio", code="missing_required_parameter")
    unknown = sorted(set(audio) - {"voice", "format"})
    if unknown:
        raise RequestError(f"'audio' has no field '{unknown[0]}': it takes 'voice' and 'format'",
                           param=f"audio.{unknown[0]}", code="unknown_parameter")
    voice = audio.get("voice")
    name = voice.get("id") if isinstance(voice, dict) else voice
    if not isinstance(name, str):
        raise RequestError(f"'audio.voice' must be a voice name (got {voice!r}); this model speaks in the voices "
                           f"{', '.join(sorted(speech.voices))}", param="audio.voice", code="invalid_value")
    try:
        engine_voice = speech.voice(name)
    except RequestError as error:
        raise RequestError(error.message, param="audio.voice", code=error.code) from None
    fmt = audio.get("format")
    if fmt not in AUDIO_FORMATS:
        raise RequestError(f"Invalid value for 'audio.format': expected one of {', '.join(AUDIO_FORMATS)} (got "
                           f"{fmt!r})", param="audio.format", code="invalid_value")
    if body.get("n", 1) not in (1, None):
        raise RequestError("'n' above 1 cannot be combined with audio output: one answer is spoken", param="n",
                           code="invalid_value")
    if body.get("store") is True:
        raise RequestError("'store' cannot be combined with audio output: stored chat completions keep text, and "
                           "ovserve keeps no audio; leave 'store' out, or ask for text", param="store",
                           code="invalid_value")
    return SpokenAnswer(True, engine_voice, AUDIO_FORMATS[fmt], body.get("stream") is True)


def audio_parts(body: dict[str, Any]) -> list[tuple[int, int, dict[str, Any]]]:
    """Every ``input_audio`` part of the messages: (its message's index, its index in the content, the part)."""
    found: list[tuple[int, int, dict[str, Any]]] = []
    messages = body.get("messages")
    for i, message in enumerate(messages if isinstance(messages, list) else []):
        content = message.get("content") if isinstance(message, dict) else None
        for j, part in enumerate(content if isinstance(content, list) else []):
            if isinstance(part, dict) and part.get("type") == "input_audio":
                found.append((i, j, part))
    if len(found) > MAX_AUDIO_PARTS:
        raise RequestError(f"the request holds {len(found)} input_audio parts; at most {MAX_AUDIO_PARTS} are taken",
                           param=part_param(*found[MAX_AUDIO_PARTS][:2]), code="invalid_value")
    return found


def part_param(message: int, part: int) -> str:
    """The param that names a content part."""
    return f"messages[{message}].content[{part}]"


def audio_bytes(param: str, part: dict[str, Any]) -> bytes:
    """The bytes of an ``input_audio`` part, checked to be base64 of a file in the format it names."""
    audio = part.get("input_audio")
    if not isinstance(audio, dict) or not isinstance(audio.get("data"), str):
        raise RequestError(f"'{param}.input_audio' must be an object with 'data' (base64) and 'format' "
                           f"({' or '.join(INPUT_FORMATS)})", param=f"{param}.input_audio", code="invalid_value")
    fmt = audio.get("format")
    if fmt not in INPUT_FORMATS:
        raise RequestError(f"Invalid value for '{param}.input_audio.format': expected {' or '.join(INPUT_FORMATS)} "
                           f"(got {fmt!r})", param=f"{param}.input_audio.format", code="invalid_value")
    try:
        data = base64.b64decode(audio["data"], validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"'{param}.input_audio.data' is not valid base64", param=f"{param}.input_audio.data",
                           code="invalid_value") from None
    found = sniff_format(data[:12])
    if found != fmt:
        what = f"a {found} file" if found else "not a recognized audio file"
        raise RequestError(f"'{param}.input_audio.data' is {what}, but 'format' says {fmt}",
                           param=f"{param}.input_audio.data", code="invalid_value")
    return data


class ListenCalculator(Calculator):
    """Called once per request of a voice graph, before the LLM nodes. A chat completion request's ``modalities``
    and ``audio`` are checked against the speech model and sent on VOICE (always one packet: what the speaking node
    must do); each ``input_audio`` part is decoded, transcribed in the speech-to-text engine and replaced by a text
    part holding its transcript; the request goes on, without those fields, on HTTP_REQUEST_PAYLOAD. Any other
    request passes through unchanged (its own nodes refuse audio by name)."""

    HTTP_REQUEST_PAYLOAD = Input(HttpRequestPayload, doc="the HTTP request, JSON already parsed")
    WHISPER = SideInput(SpeechModel, doc="the speech-to-text model that transcribes input_audio parts")
    SPEECH = SideInput(TtsModel, doc="the speech model, whose voices the request's audio.voice is checked against")
    CHAT = Output(HttpRequestPayload, doc="the request with its audio turned into text")
    VOICE = Output(SpokenAnswer, doc="the audio output the request asks for (or none)")

    async def process(self, ctx: CalculatorContext) -> None:
        payload: HttpRequestPayload = ctx.value(self.HTTP_REQUEST_PAYLOAD)
        body = payload.json
        if not payload.uri.endswith("/chat/completions") or not isinstance(body, dict):
            await ctx.send(self.VOICE, SpokenAnswer(False))
            await ctx.send(self.CHAT, payload)
            return
        answer = spoken_answer(body, ctx.side["SPEECH"])
        parts = audio_parts(body)
        # base64 of up to the body limit: decoded off the event loop
        uploads = await asyncio.to_thread(lambda: [(part_param(i, j), audio_bytes(part_param(i, j), part))
                                                   for i, j, part in parts])
        body = {key: value for key, value in body.items() if key not in ("modalities", "audio")}
        if uploads:
            texts = await transcribe(ctx.side["WHISPER"], uploads)
            body["messages"] = [dict(message) if isinstance(message, dict) else message
                                for message in body["messages"]]
            for (i, j, _), text in zip(parts, texts, strict=True):
                content = list(body["messages"][i]["content"])
                content[j] = {"type": "text", "text": text}
                body["messages"][i]["content"] = content
        await ctx.send(self.VOICE, answer)
        await ctx.send(self.CHAT, dataclasses.replace(payload, json=body))


async def transcribe(model: SpeechModel, uploads: list[tuple[str, bytes]]) -> list[str]:
    """Each upload's transcript, one after another (a 400 naming the part's ``data`` for audio that does not
    decode)."""
    texts: list[str] = []
    model.hold()
    try:
        for param, data in uploads:
            try:
                audio = await asyncio.to_thread(decode_audio, data, model.limits)
            except RequestError as error:
                raise RequestError(error.message.replace("Invalid file", f"Invalid '{param}.input_audio.data'"),
                                   status=error.status, param=f"{param}.input_audio.data", code=error.code) from None
            result: WhisperResult = await model.engine.call(TranscribeJob(audio.samples.tobytes()))
            texts.append(result.text.strip())
    finally:
        model.release()
    return texts
