"""Sounds made in the tests themselves: a numpy signal encoded by PyAV into any container the decoder accepts."""

from __future__ import annotations

import io

import av
import numpy as np

#: container (PyAV muxer) and codec for each upload format the tests make.
FORMATS = {
    "wav": ("wav", "pcm_s16le"),
    "flac": ("flac", "flac"),
    "mp3": ("mp3", "libmp3lame"),
    "ogg": ("ogg", "libopus"),
    "webm": ("webm", "libopus"),
    "m4a": ("ipod", "aac"),
}

#: The rates each codec can encode (Opus only at 48 kHz and below, in fixed steps).
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


def sine(freq: float, seconds: float, rate: int, channels: int = 1, amplitude: float = 0.5) -> np.ndarray:
    """A sine as float32 samples shaped (channels, samples); the channels carry the same tone."""
    t = np.arange(int(seconds * rate)) / rate
    tone = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.tile(tone, (channels, 1))


def encode(signal: np.ndarray, rate: int, fmt: str, options: dict[str, str] | None = None) -> bytes:
    """``signal`` (channels, samples) float32 encoded as ``fmt`` (a key of :data:`FORMATS`), in memory."""
    muxer, codec = FORMATS[fmt]
    channels = signal.shape[0]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=muxer, options=options or {}) as container:
        stream = container.add_stream(codec, rate=rate, layout="mono" if channels == 1 else "stereo")
        block = 4096
        for start in range(0, signal.shape[1], block):
            part = np.ascontiguousarray(signal[:, start:start + block])
            frame = av.AudioFrame.from_ndarray(part, format="fltp", layout=stream.layout.name)
            frame.sample_rate = rate
            frame.pts = start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()
