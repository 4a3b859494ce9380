"""The text-to-speech kind: OpenVINO GenAI's ``Text2SpeechPipeline`` behind the engine boundary.

The server sends a :class:`SpeechSpec` to the engine process, which loads the pipeline once (and, for SpeechT5, the
model's tokenizer, to count tokens) and runs each :class:`SpeakJob` as one ``generate`` call on one piece of text:
a sentence, or a part of a long one (:class:`~ovserve.engine.kinds.CallCore`, one call at a time: the pipeline is
not safe to call from two threads). The job comes back as a :class:`SpeechResult`: float32 samples as bytes, never a
list, and their sample rate. A text is spoken sentence by sentence as separate jobs, so that its first sentence can
be sent to the client while the next ones are synthesized (:mod:`ovserve.calculators.speech.synthesize`).

What GenAI 2026.4 does that the jobs work around:

- ``generate`` has no callback: a running call cannot be stopped, so a client that goes away stops its speech at the
  next sentence (a job still waiting is dropped at once). Pieces are kept short for that reason too.
- SpeechT5's encoder reads at most ``max_text_positions`` tokens, and a call with more fails: the server keeps
  pieces short, but a character may be read as several tokens (NFKC normalization), so a job says a text that is
  still too long in parts that fit, and joins their samples.
- SpeechT5's decoder stops when its stop head fires, or after ``maxlenratio`` x tokens / 2 steps; its position table
  holds ``max_speech_positions`` steps, and a call that runs past them fails. The job lowers ``maxlenratio`` for a
  piece whose bound would run past them, so that no text fails that way.
- A call that fails inside the decoder leaves its state behind, and every later call fails: the engine then loads
  the pipeline again (a second or so) before it takes the next job.
- With several texts in one call, every speech it returns is the vocoder's last output (they share one buffer): a
  job passes one text and copies the samples out before the next call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ovserve.engine.folder_spec import FolderSpec
from ovserve.engine.kinds import CallCore, CallJob, CallSignal, EngineCore

#: How many jobs a speech engine holds by default, running and waiting (a request keeps at most two in it: the
#: sentence being spoken and the next).
DEFAULT_MAX_QUEUED_JOBS = 8
#: SpeechT5's own bounds when its config.json leaves them out (microsoft/speecht5_tts's values).
SPEECHT5_MAX_SPEECH_POSITIONS = 1876
SPEECHT5_MAX_TEXT_POSITIONS = 600
SPEECHT5_REDUCTION_FACTOR = 2


@dataclass(frozen=True)
class SpeechSpec(FolderSpec):
    """A text-to-speech model to serve: its OpenVINO IR ``folder`` (SpeechT5: encoder, decoder, postnet, vocoder and
    tokenizer IR; Kokoro: ``openvino_model.xml``), the device, OpenVINO properties, how many jobs it may hold, and its
    voices: ``(name, file)`` pairs, each file a speaker embedding (raw little-endian float32 ``.bin``, or ``.npy``)
    in the shape the model takes, which the engine reads and checks when it loads."""

    max_queued: int = DEFAULT_MAX_QUEUED_JOBS
    voices: tuple[tuple[str, str], ...] = ()

    def load(self) -> EngineCore:
        import openvino_genai

        from ovserve.engine.devices import checked_device

        folder = Path(self.folder)
        device = checked_device(self.target_device)

        def build() -> Any:
            return openvino_genai.Text2SpeechPipeline(self.folder, device, **self.plugin_config)

        pipeline = build()
        shape = [int(dim) for dim in pipeline.get_speaker_embedding_shape()]
        voices = {name: read_speaker_embedding(Path(path), shape, name) for name, path in self.voices}
        tokenizer = (openvino_genai.Tokenizer(self.folder) if (folder / "openvino_tokenizer.xml").is_file() else None)
        return CallCore(Speaker(pipeline, tokenizer, build, *decoder_bounds(folder), voices=voices), concurrency=1)


def read_speaker_embedding(path: Path, shape: list[int], name: str) -> Any:
    """A voice's speaker embedding as the tensor the pipeline takes: a ``.npy`` array, or a raw little-endian float32
    file, with as many numbers as ``shape`` holds; raises naming the voice and the file otherwise."""
    import numpy as np
    import openvino

    size = int(np.prod(shape))
    try:
        if path.suffix == ".npy":
            values = np.load(path, allow_pickle=False).astype(np.float32, copy=False).reshape(-1)
        else:
            values = np.fromfile(path, dtype="<f4")
    except (OSError, ValueError) as error:
        raise ValueError(f"the voice '{name}': {path} cannot be read as a speaker embedding ({error})") from None
    if values.size != size:
        raise ValueError(f"the voice '{name}': {path} holds {values.size} numbers; this model takes speaker "
                         f"embeddings of {size} float32 numbers (shape {shape})")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"the voice '{name}': {path} holds numbers that are not finite")
    return openvino.Tensor(np.ascontiguousarray(values, dtype=np.float32).reshape(shape))


def decoder_bounds(folder: Path) -> tuple[int, int, int]:
    """SpeechT5's ``max_text_positions``, ``max_speech_positions`` and ``reduction_factor`` from the folder's
    config.json (its defaults where the file does not say)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}

    def number(key: str, default: int) -> int:
        value = config.get(key) if isinstance(config, dict) else None
        return value if isinstance(value, int) and value > 1 else default

    return (number("max_text_positions", SPEECHT5_MAX_TEXT_POSITIONS),
            number("max_speech_positions", SPEECHT5_MAX_SPEECH_POSITIONS),
            number("reduction_factor", SPEECHT5_REDUCTION_FACTOR))


@dataclass
class Speaker:
    """What the jobs run on, in the engine process: the pipeline, the model's tokenizer (SpeechT5's; ``None`` for a
    model without one, such as Kokoro), how to load the pipeline again, and the decoder's bounds."""

    pipeline: Any
    tokenizer: Any
    rebuild: Any = None
    max_text_positions: int = SPEECHT5_MAX_TEXT_POSITIONS
    max_speech_positions: int = SPEECHT5_MAX_SPEECH_POSITIONS
    reduction_factor: int = SPEECHT5_REDUCTION_FACTOR
    #: Speaker embeddings by voice name.
    voices: dict[str, Any] = field(default_factory=dict)

    def generate(self, text: str, embedding: Any, properties: dict[str, Any]) -> Any:
        """One ``generate`` call; after a failure the pipeline is loaded again (a failed SpeechT5 call leaves its
        decoder's state behind, which fails every later call) and the failure raised."""
        try:
            return self.pipeline.generate(text, embedding, **properties)
        except Exception:
            if self.rebuild is not None:
                self.pipeline = None  # let the spoiled one go before loading again
                self.pipeline = self.rebuild()
            raise

    def count_tokens(self, text: str) -> int:
        """The tokens ``text`` is read as (0 when the model has no tokenizer to count with)."""
        if self.tokenizer is None:
            return 0
        return int(self.tokenizer.encode(text).input_ids.get_shape()[-1])

    def bounded_maxlenratio(self, tokens: int) -> float | None:
        """A ``maxlenratio`` for a text of ``tokens`` tokens that keeps the decoder within its position table, or
        ``None`` when the pipeline's own already does."""
        if tokens <= 0:
            return None
        config = self.pipeline.get_generation_config()
        steps = int(tokens * config.maxlenratio / self.reduction_factor)
        if steps < self.max_speech_positions - 1:
            return None
        ratio = (self.max_speech_positions - 2) * self.reduction_factor / tokens
        return max(ratio, config.minlenratio + 1e-3)


@dataclass(frozen=True)
class SpeechResult:
    """What a job gives back: the speech as float32 samples (bytes, mono, in [-1, 1]), their sample rate, and how
    many tokens the text was read as (0 when the model does not say)."""

    samples: bytes
    sample_rate: int
    input_tokens: int = 0


@dataclass(frozen=True)
class SpeakJob(CallJob):
    """Say one piece of ``text`` (a sentence; the server keeps pieces short) in ``voice``: the name of one of the
    engine's voices, or ``None`` for the model's built-in speaker (SpeechT5's; Kokoro has none). ``language`` goes to
    models that read it (Kokoro's phonemizer)."""

    text: str
    voice: str | None = None
    language: str | None = None

    def run(self, pipeline: Speaker, emit: Any, cancelled: CallSignal) -> SpeechResult | None:
        import numpy as np

        if cancelled.is_set():
            return None
        if self.voice is not None and self.voice not in pipeline.voices:
            raise ValueError(f"this engine has no voice '{self.voice}'")
        embedding = None if self.voice is None else pipeline.voices[self.voice]
        parts: list[np.ndarray] = []
        rate, tokens = 0, 0
        for text, count in fitting_parts(pipeline, self.text):
            if parts and cancelled.is_set():
                return None
            properties: dict[str, Any] = {"language": self.language} if self.language else {}
            ratio = pipeline.bounded_maxlenratio(count)
            if ratio is not None:
                properties["maxlenratio"] = ratio
            result = pipeline.generate(text, embedding, properties)
            (speech,) = result.speeches
            parts.append(np.array(speech.data, dtype=np.float32).reshape(-1))  # a copy: the buffer is reused
            rate, tokens = int(result.output_sample_rate), tokens + count
        samples = np.concatenate(parts) if len(parts) > 1 else parts[0]
        return SpeechResult(samples.tobytes(), rate, tokens)


def fitting_parts(pipeline: Speaker, text: str) -> list[tuple[str, int]]:
    """``text`` in parts the encoder reads whole, with their token counts: the text itself, or (when it is more
    tokens than the model's position table, as a text of characters that normalize to several can be) its halves,
    cut at a space where there is one, and so on."""
    tokens = pipeline.count_tokens(text)
    if tokens <= pipeline.max_text_positions or len(text) < 2:
        return [(text, tokens)]
    middle = len(text) // 2
    space = text.rfind(" ", 0, middle)
    cut = space if space > len(text) // 4 else middle
    return fitting_parts(pipeline, text[:cut]) + fitting_parts(pipeline, text[cut:])
