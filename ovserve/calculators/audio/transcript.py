"""Whisper's result → OpenAI's speech-to-text response bodies and stream events.

The transcription and translation calculators build a :class:`Transcript` from what OpenVINO GenAI's
``WhisperPipeline`` returned (:meth:`Transcript.from_whisper`), then write it in the requested ``response_format``
with :func:`render`; a streamed transcription writes its events with :class:`TranscriptStream`.

OpenAI's ``verbose_json`` segments carry decoder statistics that GenAI does not return. What is filled, and how:

- ``id``: the segment's index; ``start``, ``end``, ``text``: Whisper's chunk; ``temperature``: the request's
  (GenAI does not fall back to higher temperatures as openai-whisper does);
- ``seek``: the start of the 30-second window the segment lies in, in mel frames (100 a second), derived from the
  segment's start;
- ``compression_ratio``: computed from the text as Whisper computes it (UTF-8 length over zlib-compressed length);
- ``tokens``: the segment's token ids when the engine gives them, else ``[]``;
- ``avg_logprob`` and ``no_speech_prob``: **placeholders** (``0.0``) unless the engine gives them, since GenAI's
  results have neither. A client's "failed" heuristics (``avg_logprob < -1``, ``no_speech_prob > 0.6``) therefore
  never fire on placeholders.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ovserve.calculators.audio.schema import WHISPER_LANGUAGES

#: Mel frames a second: ``seek`` counts in these.
FRAMES_PER_SECOND = 100
#: Whisper reads audio in windows of this many seconds.
WINDOW_SECONDS = 30


@dataclass(frozen=True)
class Segment:
    """A stretch of text with its start and end in seconds (a ``WhisperDecodedResultChunk``), and what the engine
    knows about how it was decoded."""

    start: float
    end: float
    text: str
    tokens: tuple[int, ...] = ()
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0


@dataclass(frozen=True)
class Word:
    """A word with its start and end in seconds (a ``WhisperWordTiming``)."""

    word: str
    start: float
    end: float


@dataclass(frozen=True)
class Transcript:
    """One request's result: ``text`` as Whisper wrote it, ``duration`` of the audio in seconds, the ``language``
    code spoken (detected or asked for), and the segments and words when the engine timed them."""

    text: str
    duration: float
    language: str | None = None
    task: Literal["transcribe", "translate"] = "transcribe"
    temperature: float = 0.0
    segments: Sequence[Segment] = field(default_factory=tuple)
    words: Sequence[Word] | None = None

    @classmethod
    def from_whisper(cls, result: Any, duration: float, *, language: str | None = None,
                     task: Literal["transcribe", "translate"] = "transcribe", temperature: float = 0.0) -> Transcript:
        """A transcript from a ``WhisperDecodedResults`` (or anything shaped so): its first text, its ``chunks``
        (``start_ts``, ``end_ts``, ``text``) and its ``words`` (``word``, ``start_ts``, ``end_ts``), either of which
        may be missing or ``None``."""
        chunks = getattr(result, "chunks", None) or []
        words = getattr(result, "words", None)
        return cls(
            text=result.texts[0] if result.texts else "", duration=duration, language=language, task=task,
            temperature=temperature,
            segments=tuple(Segment(float(c.start_ts), float(c.end_ts), c.text) for c in chunks),
            words=None if words is None else tuple(Word(w.word, float(w.start_ts), float(w.end_ts)) for w in words),
        )


@dataclass(frozen=True)
class Rendered:
    """A response body and its content type: a JSON object for ``json`` and ``verbose_json``, text otherwise."""

    body: dict[str, Any] | str
    media_type: str


def usage_seconds(duration: float) -> dict[str, Any]:
    """OpenAI's usage for a duration-billed model: whole seconds of audio, rounded up."""
    return {"type": "duration", "seconds": math.ceil(duration)}


def render(transcript: Transcript, response_format: str,
           granularities: frozenset[str] = frozenset({"segment"})) -> Rendered:
    """The response body for ``response_format`` (json, text, srt, vtt or verbose_json). Translations (``task``
    ``translate``) carry no usage and no words, as OpenAI's ``Translation`` types have none."""
    text = transcript.text.strip()
    if response_format == "json":
        body: dict[str, Any] = {"text": text}
        if transcript.task == "transcribe":
            body["usage"] = usage_seconds(transcript.duration)
        return Rendered(body, "application/json")
    if response_format == "text":
        return Rendered(text + "\n" if text else "", "text/plain; charset=utf-8")
    if response_format == "srt":
        return Rendered(srt(cues(transcript)), "application/x-subrip; charset=utf-8")
    if response_format == "vtt":
        return Rendered(vtt(cues(transcript)), "text/vtt; charset=utf-8")
    if response_format == "verbose_json":
        return Rendered(verbose_json(transcript, granularities), "application/json")
    raise ValueError(f"unknown response_format {response_format!r}; expected json, text, srt, vtt or verbose_json")


def cues(transcript: Transcript) -> list[Segment]:
    """The subtitle cues: the segments with text, or one cue over the whole audio when the engine gave none."""
    if transcript.segments:
        return [s for s in transcript.segments if s.text.strip()]
    text = transcript.text
    return [Segment(0.0, transcript.duration, text)] if text.strip() else []


def timestamp(seconds: float, separator: str) -> str:
    """``HH:MM:SS<separator>mmm`` (``,`` for SubRip, ``.`` for WebVTT), rounded to the millisecond."""
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def cue_text(text: str) -> str:
    """A cue's text on its own lines: stripped, without blank lines (which would end the cue), and without
    ``-->`` (which a reader would take for a timing line)."""
    lines = (line.strip() for line in text.replace("-->", "->").splitlines())
    return "\n".join(line for line in lines if line)


def srt(segments: Iterable[Segment]) -> str:
    """SubRip: numbered cues from 1, ``00:00:01,000 --> 00:00:02,500`` timings, a blank line after each cue."""
    blocks = [f"{n}\n{timestamp(s.start, ',')} --> {timestamp(s.end, ',')}\n{cue_text(s.text)}\n"
              for n, s in enumerate(segments, start=1)]
    return "\n".join(blocks)


def vtt(segments: Iterable[Segment]) -> str:
    """WebVTT: the ``WEBVTT`` header, then cues with ``00:00:01.000 --> 00:00:02.500`` timings, each followed by a
    blank line; ``&``, ``<`` and ``>`` escaped as WebVTT requires."""
    blocks = [f"{timestamp(s.start, '.')} --> {timestamp(s.end, '.')}\n{escape_vtt(cue_text(s.text))}\n\n"
              for s in segments]
    return "WEBVTT\n\n" + "".join(blocks)


def escape_vtt(text: str) -> str:
    """Text as WebVTT cue text: ``&``, ``<`` and ``>`` as character references (they open tags otherwise)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def compression_ratio(text: str) -> float:
    """Whisper's repetition measure: the text's UTF-8 length over its zlib-compressed length (0 for no text)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def verbose_segment(index: int, segment: Segment, temperature: float) -> dict[str, Any]:
    """One of ``verbose_json``'s segments (the module's docstring says which fields are placeholders)."""
    window = math.floor(segment.start / WINDOW_SECONDS) * WINDOW_SECONDS
    return {"id": index, "seek": window * FRAMES_PER_SECOND, "start": segment.start, "end": segment.end,
            "text": segment.text, "tokens": list(segment.tokens), "temperature": temperature,
            "avg_logprob": segment.avg_logprob, "compression_ratio": compression_ratio(segment.text),
            "no_speech_prob": segment.no_speech_prob}


def verbose_json(transcript: Transcript, granularities: frozenset[str]) -> dict[str, Any]:
    """``verbose_json``: task, language name, duration, text, then ``segments`` when segment timestamps were asked
    for (the default) and ``words`` when word timestamps were (transcriptions only); usage for transcriptions."""
    language = transcript.language or ""
    body: dict[str, Any] = {"task": transcript.task, "language": WHISPER_LANGUAGES.get(language, language),
                            "duration": transcript.duration, "text": transcript.text.strip()}
    if "segment" in granularities:
        body["segments"] = [verbose_segment(i, s, transcript.temperature) for i, s in enumerate(cues(transcript))]
    if "word" in granularities and transcript.task == "transcribe":
        body["words"] = [{"word": w.word.strip(), "start": w.start, "end": w.end} for w in transcript.words or ()]
    if transcript.task == "transcribe":
        body["usage"] = usage_seconds(transcript.duration)
    return body


def sse(event: dict[str, Any]) -> str:
    """One server-sent event: ``data: {json}`` and a blank line."""
    return f"data: {json.dumps(event, ensure_ascii=False, separators=(',', ':'))}\n\n"


class TranscriptStream:
    """A streamed transcription's events, as OpenAI sends them: ``transcript.text.delta`` for each piece of text,
    then one ``transcript.text.done`` with the whole text. Created per request; :meth:`delta` is called with each
    piece the engine's streamer gives, :meth:`done` once at the end. The deltas join up to the done event's text
    (Whisper's leading space is dropped from the first)."""

    def __init__(self) -> None:
        self._text = ""

    def delta(self, piece: str) -> str | None:
        """The event for ``piece``, or ``None`` when it adds nothing to send."""
        if not self._text:
            piece = piece.lstrip()
        if not piece:
            return None
        self._text += piece
        return sse({"type": "transcript.text.delta", "delta": piece})

    def done(self, text: str | None = None, *, input_tokens: int | None = None,
             output_tokens: int | None = None) -> str:
        """The closing event: ``text`` (else the deltas joined), and usage when the token counts are known.
        OpenAI's done event carries token usage only (``type`` ``tokens``); duration usage has no place in it."""
        event: dict[str, Any] = {"type": "transcript.text.done",
                                 "text": self._text.strip() if text is None else text.strip()}
        if input_tokens is not None and output_tokens is not None:
            event["usage"] = {"type": "tokens", "input_tokens": input_tokens, "output_tokens": output_tokens,
                              "total_tokens": input_tokens + output_tokens}
        return sse(event)
