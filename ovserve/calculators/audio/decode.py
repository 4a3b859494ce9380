"""An uploaded audio file → the 16 kHz mono float32 samples Whisper reads.

:func:`decode_audio` is called by the transcription and translation endpoints with the bytes of the multipart
``file`` field, before the engine sees anything. It is synchronous CPU work (demuxing, decoding, resampling): callers
run it in a worker thread (``starlette.concurrency.run_in_threadpool`` or ``asyncio.to_thread``), never on the event
loop.

Decoding is PyAV's (FFmpeg's libraries, shipped in its wheels), so one library reads every format browsers and
chat UIs upload, webm and m4a included. The format is recognized from the file's first bytes here, and FFmpeg is
then told which demuxer to use: it never probes an upload, so no demuxer outside the accepted formats (playlists,
subtitles, image sequences, ...) ever parses one. Limits hold while decoding: the size before anything is parsed,
the declared duration before any frame is decoded, and the decoded duration frame by frame, so a file whose
header lies (or, as browsers' MediaRecorder webm, declares none) is refused after at most the allowed audio.

A file cut short decodes as any player plays it: wav, mp3, ogg and webm give the audio before the cut (their
streams cannot tell a cut from an end), while flac and m4a report the damage and are refused, as is any file whose
header is cut or any decoding error.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ovserve.errors import RequestError

if TYPE_CHECKING:
    import av

#: Whisper's sampling rate: every model reads 16 kHz mono.
SAMPLE_RATE = 16_000
#: The largest upload, as OpenAI's audio endpoints allow (25 MB).
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
#: The longest audio by default; :class:`AudioLimits` sets another.
DEFAULT_MAX_SECONDS = 30 * 60.0
#: Shorter audio is padded with silence to this many samples (25 ms, one window of Whisper's 400-point STFT).
#: OpenVINO GenAI's WhisperPipeline refuses 200 samples or fewer (measured with models/tiny/whisper), while Whisper
#: itself pads every input with silence to 30 s: trailing silence changes nothing Whisper hears, a refusal would
#: only fail a short but valid clip (a click of a push-to-talk button).
MIN_SAMPLES = 400

#: The accepted formats, as named to users, and the FFmpeg demuxer that reads each.
DEMUXERS = {"wav": "wav", "flac": "flac", "mp3": "mp3", "ogg": "ogg", "webm": "matroska", "m4a": "mov"}
ACCEPTED = "wav, flac, mp3, ogg (opus or vorbis), webm (opus or vorbis), m4a/mp4 (aac or alac)"
#: The audio codecs decoded (FFmpeg's decoder names); anything else in an accepted container is refused.
CODECS = frozenset({"pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le", "pcm_f64le", "pcm_u8", "pcm_alaw",
                    "pcm_mulaw", "flac", "mp3float", "mp3", "opus", "libopus", "vorbis", "libvorbis", "aac", "alac"})


@dataclass(frozen=True)
class AudioLimits:
    """What one upload may be: at most ``max_bytes`` long and ``max_seconds`` of audio."""

    max_bytes: int = MAX_UPLOAD_BYTES
    max_seconds: float = DEFAULT_MAX_SECONDS


@dataclass(frozen=True)
class DecodedAudio:
    """An upload decoded: ``samples`` (float32, mono, 16 kHz, in [-1, 1], padded to :data:`MIN_SAMPLES`),
    ``duration`` in seconds before any padding (what usage reports), and the ``format`` recognized."""

    samples: np.ndarray
    duration: float
    format: str


def invalid_file(problem: str) -> RequestError:
    """A 400 naming ``file``: what was wrong with it, and what is accepted."""
    return RequestError(f"Invalid file: {problem}. Accepted audio formats: {ACCEPTED}.", param="file",
                        code="invalid_value")


def sniff_format(head: bytes) -> str | None:
    """The upload format (a key of :data:`DEMUXERS`) that a file's first bytes announce, or ``None``."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: Matroska, of which webm is a subset
        return "webm"
    if head[4:8] == b"ftyp":  # ISO base media: m4a, mp4, mov
        return "m4a"
    if head[:3] == b"ID3":
        return "mp3"
    # An MPEG audio frame: 11 sync bits, then a layer other than "reserved" (ADTS AAC has layer 00)
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06:
        return "mp3"
    return None


def decode_audio(data: bytes, limits: AudioLimits | None = None) -> DecodedAudio:
    """``data`` (an uploaded file) decoded to 16 kHz mono float32; a 400 naming ``file`` if it is not audio in an
    accepted format, is corrupt, is empty, or is over ``limits``. Synchronous and CPU-bound: run it in a thread."""
    import av  # the [audio] extra: imported when audio comes, so that the rest of ovserve runs without it

    limits = limits or AudioLimits()
    if not data:
        raise invalid_file("the file is empty")
    if len(data) > limits.max_bytes:
        raise RequestError(f"Invalid file: {len(data)} bytes is larger than the {limits.max_bytes}-byte limit "
                           f"({limits.max_bytes / 1_048_576:g} MiB); send a shorter or more compressed recording.",
                           status=413, param="file", code="file_too_large")
    fmt = sniff_format(data[:12])
    if fmt is None:
        raise invalid_file("the file is not in a recognized audio format")
    try:
        with av.open(io.BytesIO(data), mode="r", format=DEMUXERS[fmt]) as container:
            samples = _decode_container(container, fmt, limits)
    except av.FFmpegError as error:
        raise invalid_file(f"the {fmt} file could not be decoded ({error.strerror or error})") from None
    except ValueError as error:  # PyAV's resampler refuses frames whose rate or layout changed mid-stream
        raise invalid_file(f"the {fmt} file could not be decoded ({error})") from None
    duration = samples.size / SAMPLE_RATE
    if samples.size == 0:
        raise invalid_file(f"the {fmt} file holds no audio samples")
    if samples.size < MIN_SAMPLES:
        samples = np.concatenate([samples, np.zeros(MIN_SAMPLES - samples.size, np.float32)])
    return DecodedAudio(samples=samples, duration=duration, format=fmt)


def _decode_container(container: av.container.InputContainer, fmt: str, limits: AudioLimits) -> np.ndarray:
    """The first audio stream of an open container, decoded within ``limits.max_seconds``."""
    if not container.streams.audio:
        raise invalid_file(f"the {fmt} file has no audio stream")
    stream = container.streams.audio[0]
    codec = stream.codec_context.name
    if codec not in CODECS:
        raise invalid_file(f"the {fmt} file holds {codec} audio, which is not decoded here")
    # The declared duration refuses a long file before any frame is decoded; mp3's is only an estimate from the
    # bitrate, so mp3 is held to the decoded duration alone.
    if fmt != "mp3" and container.duration is not None and container.duration / 1e6 > limits.max_seconds:
        raise too_long(container.duration / 1e6, limits)
    max_samples = int(limits.max_seconds * SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    total = 0
    for chunk in _resampled_chunks(container, stream):
        total += chunk.size
        if total > max_samples:
            raise too_long(None, limits)
        chunks.append(chunk)
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def _resampled_chunks(container: av.container.InputContainer, stream: av.AudioStream) -> Iterator[np.ndarray]:
    """The stream's audio, frame by frame, as 16 kHz mono float32 arrays (the resampler flushed at the end)."""
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    for frame in container.decode(stream):
        for out in resampler.resample(frame):
            yield out.to_ndarray().reshape(-1)
    for out in resampler.resample(None):
        yield out.to_ndarray().reshape(-1)


def too_long(seconds: float | None, limits: AudioLimits) -> RequestError:
    """A 400 naming ``file`` for audio over ``limits.max_seconds`` (``seconds`` when the file declares it)."""
    length = f"{seconds:.1f} s of audio" if seconds is not None else "more audio than allowed"
    return RequestError(f"Invalid file: it holds {length}; the limit is {limits.max_seconds:g} s "
                        f"({limits.max_seconds / 60:g} min). Split the recording and send the parts.",
                        param="file", code="invalid_value")
