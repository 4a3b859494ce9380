"""Sentences → speech, through a speech model's engine: the building block of the speech node (and of any node that
speaks, such as the speaking end of a voice graph).

:func:`speak` takes sentences as they come (a list, or an async iterator fed by an LLM's text as it is written) and
yields each one's :class:`Speech` in order. It keeps at most ``ahead`` sentences in the engine: while one is spoken
the next waits there, so the engine goes from one straight to the next, and other requests' sentences take their
turns between them. Leaving the loop early (a client that went away) drops the sentences still queued; the one
being spoken ends with its call (GenAI's speech pipeline cannot be stopped mid-call).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass

import numpy as np

from ovserve.calculators.speech.model import TtsModel
from ovserve.engine.call_client import CallRequest
from ovserve.engine.tts_kind import SpeakJob, SpeechResult

#: Sentences a request keeps in the engine at once: the one being spoken and the next.
AHEAD = 2


@dataclass(frozen=True)
class Speech:
    """One sentence spoken: its text, its samples (float32, mono, in [-1, 1]) at ``sample_rate``, and the tokens the
    model read it as (0 when the model does not say)."""

    text: str
    samples: np.ndarray
    sample_rate: int
    input_tokens: int = 0

    @property
    def seconds(self) -> float:
        return self.samples.size / self.sample_rate


async def _aiter(sentences: Iterable[str] | AsyncIterable[str]) -> AsyncIterator[str]:
    if isinstance(sentences, AsyncIterable):
        async for sentence in sentences:
            yield sentence
    else:
        for sentence in sentences:
            yield sentence


async def speak(model: TtsModel, sentences: Iterable[str] | AsyncIterable[str], voice: str | None,
                language: str | None = None, ahead: int = AHEAD) -> AsyncIterator[Speech]:
    """Each sentence's speech, in order, in ``voice`` (an engine voice name; ``None``: the model's built-in speaker).
    Raises :class:`~ovserve.engine.client.EngineBusyError` (503) when the engine is full, and the engine's error when
    a sentence fails."""
    source = _aiter(sentences)
    queued: deque[tuple[str, CallRequest]] = deque()
    reading: asyncio.Task[str | None] | None = None
    waiting: asyncio.Task[SpeechResult | None] | None = None
    done_reading = False
    try:
        while True:
            if reading is None and not done_reading and len(queued) < ahead:
                reading = asyncio.ensure_future(anext(source, None))
            if waiting is None and queued:
                waiting = asyncio.ensure_future(queued[0][1].result())
            pending = [task for task in (reading, waiting) if task is not None]
            if not pending:
                return
            finished, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if reading is not None and reading in finished:
                sentence, reading = reading.result(), None
                if sentence is None:
                    done_reading = True
                elif sentence.strip():
                    queued.append((sentence, model.engine.submit(SpeakJob(sentence, voice, language))))
            if waiting is not None and waiting in finished:
                result, waiting = waiting.result(), None
                text, _ = queued.popleft()
                if result is not None:
                    yield Speech(text, np.frombuffer(result.samples, dtype=np.float32), result.sample_rate,
                                 result.input_tokens)
    finally:
        for task in (reading, waiting):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        for _, request in queued:
            request.abort()
        with contextlib.suppress(Exception):
            await source.aclose()  # type: ignore[attr-defined]
