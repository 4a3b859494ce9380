"""The speech-to-text kind: OpenVINO GenAI's ``WhisperPipeline`` behind the engine boundary.

The server sends a :class:`WhisperSpec` to the engine process, which loads the pipeline once and runs each
:class:`TranscribeJob` as one ``generate`` call (:class:`~ovserve.engine.kinds.CallCore`, one call at a time: the
pipeline is not safe to call from two threads). A job carries its audio as float32 bytes, never a list, and comes
back as a :class:`WhisperResult` of plain data. Streamed jobs send each piece of text the pipeline's streamer gives
(``emit``); every job's streamer stops the call as soon as the client has gone (``cancelled``).

Everything a job may ask was checked by the server first (language, task, word timestamps): a call GenAI refuses
can leave the pipeline in a state that spoils the next calls (measured on 2026.4: after an over-long prompt failed,
sampled calls gave garbage), so the job also keeps the prompt within what the decoder takes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Literal

from ovserve.engine.folder_spec import FolderSpec
from ovserve.engine.kinds import CallCore, CallJob, CallSignal, EngineCore


@dataclass(frozen=True)
class WhisperSpec(FolderSpec):
    """A Whisper model to serve: its OpenVINO IR ``folder`` (``openvino_encoder_model.xml``, the decoder, tokenizer
    and detokenizer), the ``device``, OpenVINO properties, how many jobs it may hold at once (each holds its audio, up
    to 115 MB for 30 minutes of float32 samples, until it ends), and whether the pipeline is built for word
    timestamps (it must be, to give them, and costs more at load)."""

    word_timestamps: bool = False

    def load(self) -> EngineCore:
        import openvino_genai

        from ovserve.engine.devices import checked_device

        pipeline = openvino_genai.WhisperPipeline(self.folder, checked_device(self.target_device),
                                                  word_timestamps=self.word_timestamps, **self.plugin_config)
        return CallCore(pipeline, concurrency=1)


@dataclass(frozen=True)
class WhisperResult:
    """What a job gives back: the text as Whisper wrote it, the language it wrote it in (``en``; detected or asked
    for), the segments ``(start, end, text)`` and words ``(word, start, end)`` when timestamps were asked for, and
    how many tokens it generated."""

    text: str
    language: str | None = None
    segments: tuple[tuple[float, float, str], ...] = ()
    words: tuple[tuple[str, float, float], ...] | None = None
    output_tokens: int = 0


@dataclass(frozen=True)
class TranscribeJob(CallJob):
    """One transcription or translation: 16 kHz mono ``samples`` (float32 bytes), the ``task``, the ``language``
    code (``en``; ``None``: detected), an initial ``prompt``, the sampling ``temperature`` (0: greedy), whether
    segment and word timestamps are wanted, and whether to ``stream`` the text as it is written."""

    samples: bytes
    task: Literal["transcribe", "translate"] = "transcribe"
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0
    timestamps: bool = False
    words: bool = False
    stream: bool = False

    def run(self, pipeline: Any, emit: Any, cancelled: CallSignal) -> WhisperResult:
        import numpy as np
        import openvino_genai

        config = self.config(pipeline)
        running, cancel = openvino_genai.StreamingStatus.RUNNING, openvino_genai.StreamingStatus.CANCEL

        def streamer(piece: str) -> Any:
            if self.stream and piece:
                emit(piece)
            return cancel if cancelled.is_set() else running

        result = pipeline.generate(np.frombuffer(self.samples, dtype=np.float32), config, streamer=streamer)
        return whisper_result(result)

    def config(self, pipeline: Any) -> Any:
        """The pipeline's generation config with this job's settings."""
        config = pipeline.get_generation_config()
        config.task = self.task
        config.language = f"<|{self.language}|>" if self.language else None
        config.return_timestamps = self.timestamps
        config.word_timestamps = self.words
        if self.temperature > 0:
            config.do_sample = True
            config.temperature = self.temperature
            config.rng_seed = random.getrandbits(31)  # each request draws its own
        else:
            config.do_sample = False
        if self.prompt:
            config.initial_prompt = last_prompt_tokens(pipeline.get_tokenizer(), self.prompt, config.max_length)
        return config


def last_prompt_tokens(tokenizer: Any, prompt: str, max_length: int) -> str:
    """``prompt``, or its end when it is longer than Whisper reads: as openai-whisper and OpenAI's API do, only the
    last ``max_length // 2 - 1`` tokens (223) are kept. GenAI fails on a longer prompt (and may spoil the calls
    after it), so it never gets one."""
    keep = max_length // 2 - 1
    ids = tokenizer.encode(prompt, add_special_tokens=False).input_ids.data[0]
    if len(ids) <= keep:
        return prompt
    return tokenizer.decode(ids[-keep:].tolist(), skip_special_tokens=True)


def whisper_result(result: Any) -> WhisperResult:
    """A ``WhisperDecodedResults`` as plain data."""
    chunks = result.chunks or []
    words = result.words
    try:
        tokens = int(result.perf_metrics.get_num_generated_tokens())
    except Exception:  # metrics are a convenience: the text is what matters
        tokens = 0
    return WhisperResult(
        text=result.texts[0] if result.texts else "",
        language=getattr(result, "language", None) or None,
        segments=tuple((float(c.start_ts), float(c.end_ts), c.text) for c in chunks),
        words=None if words is None else tuple((w.word, float(w.start_ts), float(w.end_ts)) for w in words),
        output_tokens=tokens,
    )
