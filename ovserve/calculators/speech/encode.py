"""Speech samples → the audio file OpenAI's ``response_format`` names, whole or chunk by chunk.

The speech node makes one :class:`AudioEncoder` per request and feeds it each sentence's float32 samples as they
come (:meth:`AudioEncoder.add`), then :meth:`AudioEncoder.finish`. Encoding is PyAV's (FFmpeg's encoders and muxers
in its wheels, the ``[audio]`` extra): LAME for mp3, FFmpeg's own flac, aac and 16-bit PCM, libopus in Ogg. It is
synchronous CPU work: callers run it in a worker thread, never on the event loop.

A streamed response gets what the muxer has written so far after each sentence; those bytes joined are the file.
Streamed wav says "length unknown" in its header (as OpenAI's streamed wav does), and a streamed flac's header has no
total sample count; a whole response is written to memory first, so its headers carry the lengths. ``pcm`` is raw
16-bit little-endian mono at 24 kHz, as OpenAI documents it (a client cannot read the rate from raw samples, so every
model's speech is resampled to OpenAI's rate); the other formats keep the model's rate (Ogg Opus decodes at 48 kHz,
as every Opus stream does).

``speed`` (0.25 to 4) time-stretches the speech without changing its pitch: FFmpeg's ``atempo`` filter (two in a row
below 0.5, which one does not go), run over each sentence on its own and flushed at its end, so that a sentence's
audio goes out as soon as it is spoken (the filter holds back the end of what it is given until it is flushed).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import av

#: The rate of OpenAI's ``pcm`` (raw samples carry no rate, so the server keeps to OpenAI's).
PCM_RATE = 24_000


@dataclass(frozen=True)
class Format:
    """One response format: FFmpeg's muxer and encoder, the sample format the encoder takes, the rate it is written
    at (``None``: the model's), and the HTTP content type."""

    muxer: str | None
    codec: str
    sample_format: str
    media_type: str
    rate: int | None = None


#: OpenAI's ``response_format`` values.
FORMATS = {
    "mp3": Format("mp3", "libmp3lame", "s16p", "audio/mpeg"),
    "opus": Format("ogg", "libopus", "flt", "audio/ogg; codecs=opus"),
    "aac": Format("adts", "aac", "fltp", "audio/aac"),
    "flac": Format("flac", "flac", "s16", "audio/flac"),
    "wav": Format("wav", "pcm_s16le", "s16", "audio/wav"),
    "pcm": Format(None, "pcm_s16le", "s16", "audio/pcm", PCM_RATE),
}
#: The rates libopus encodes at: speech at any other rate is resampled to 48 kHz for it.
OPUS_RATES = (8_000, 12_000, 16_000, 24_000, 48_000)
#: Muxer options: write each packet at once (no buffering in FFmpeg's I/O layer), Ogg pages of 20 ms, and no
#: encoder tags (a "Lavf..." INFO chunk in wav, a vendor string's version in ogg).
MUXER_OPTIONS = {"flush_packets": "1", "fflags": "+bitexact"}
OGG_OPTIONS = {"page_duration": "20000"}


def output_rate(response_format: str, rate: int) -> int:
    """The rate ``response_format`` is written at for speech at ``rate``."""
    fmt = FORMATS[response_format]
    if fmt.rate is not None:
        return fmt.rate
    if fmt.codec == "libopus" and rate not in OPUS_RATES:
        return 48_000
    return rate


class _Sink:
    """A write-only file for FFmpeg: what is written is kept until taken. It cannot seek, so muxers write streamable
    files (wav with an open length, flac without a total sample count)."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, data: Any) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self._chunks = b"".join(self._chunks), []
        return data


class AudioEncoder:
    """Encodes one response: float32 mono samples at ``rate`` in, ``response_format`` bytes out. ``stream``: every
    :meth:`add` returns the bytes written so far (the muxer cannot seek back); otherwise the whole file comes from
    :meth:`finish`. Not thread-safe: one request's encoder is used by one thread at a time."""

    def __init__(self, response_format: str, rate: int, speed: float = 1.0, stream: bool = False) -> None:
        import av

        self.format = FORMATS[response_format]
        self.rate = rate
        self.out_rate = output_rate(response_format, rate)
        self.speed = speed
        self.stream = stream
        self.samples_in = 0
        self._resampler = av.AudioResampler(format=self.format.sample_format, layout="mono", rate=self.out_rate)
        self._pts = 0
        #: Raw pcm of a whole response, until :meth:`finish`.
        self._held: list[bytes] = []
        if self.format.muxer is None:  # pcm: the resampler's frames are the bytes
            self._container, self._stream, self._sink, self._file = None, None, None, None
            return
        self._sink = _Sink() if stream else None
        self._file = self._sink if stream else io.BytesIO()
        options = {**MUXER_OPTIONS, **(OGG_OPTIONS if self.format.muxer == "ogg" else {})}
        self._container = av.open(self._file, mode="w", format=self.format.muxer, options=options)
        self._stream = self._container.add_stream(self.format.codec, rate=self.out_rate)
        self._stream.layout = "mono"
        self._stream.format = self.format.sample_format

    @property
    def media_type(self) -> str:
        return self.format.media_type

    def add(self, samples: np.ndarray) -> bytes:
        """Encode ``samples`` (float32, mono, at ``rate``); the bytes ready to send (always ``b""`` unless
        streaming)."""
        import av

        samples = np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1)
        self.samples_in += samples.shape[1]
        if samples.shape[1] == 0:
            return b""
        frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = None
        data = self._through(frame)
        if self.stream:
            return data
        self._held.append(data)
        return b""

    def finish(self) -> bytes:
        """Flush the filter, the encoder and the muxer: the last bytes of a stream, or the whole file."""
        out = self._through(None)
        if self._container is None:
            return out if self.stream else b"".join(self._held) + out
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        if self._sink is not None:
            return out + self._sink.take()
        assert isinstance(self._file, io.BytesIO)
        return self._file.getvalue()

    def close(self) -> None:
        """Let the encoder go without finishing (the request ended early)."""
        if self._container is not None:
            with contextlib.suppress(Exception):  # an unfinished stream: nothing to keep
                self._container.close()
            self._container = None

    def _through(self, frame: av.AudioFrame | None) -> bytes:
        """``frame`` (a sentence; ``None``: the end) through a tempo filter of its own, the resampler and the
        encoder."""
        if frame is not None and self.speed != 1.0:
            tempo = _tempo_graph(self.rate, self.speed)
            frames: list[av.AudioFrame | None] = tempo.push(frame) + tempo.push(None)
        else:
            frames = [frame]
        pieces: list[bytes] = []
        for tempo_frame in frames:
            for out in self._resampler.resample(tempo_frame):
                if self._container is None:
                    pieces.append(bytes(out.planes[0])[: out.samples * 2])
                    continue
                out.pts = self._pts
                self._pts += out.samples
                for packet in self._stream.encode(out):
                    self._container.mux(packet)
        if self._sink is not None:
            pieces.append(self._sink.take())
        return b"".join(pieces)


class _TempoGraph:
    """FFmpeg's ``atempo`` filter chain for one stream: frames in, time-stretched frames out."""

    def __init__(self, graph: av.filter.Graph, source: Any, sink: Any) -> None:
        self.graph, self.source, self.sink = graph, source, sink

    def push(self, frame: av.AudioFrame | None) -> list[av.AudioFrame | None]:
        """The frames the filter gives for ``frame`` (``None`` flushes it: the rest)."""
        import av

        self.source.push(frame)
        frames: list[av.AudioFrame | None] = []
        while True:
            try:
                frames.append(self.sink.pull())
            except (av.BlockingIOError, av.EOFError):
                break
        return frames


def tempo_factors(speed: float) -> list[float]:
    """``atempo`` factors whose product is ``speed``: one from 0.5 up, two equal ones below (each must be 0.5 or
    more)."""
    if speed >= 0.5:
        return [speed]
    root = math.sqrt(speed)
    return [root, root]


def _tempo_graph(rate: int, speed: float) -> _TempoGraph:
    import av

    graph = av.filter.Graph()
    source = graph.add("abuffer", sample_rate=str(rate), sample_fmt="flt", channel_layout="mono",
                       time_base=f"1/{rate}")
    nodes = [source] + [graph.add("atempo", f"{factor:.6f}") for factor in tempo_factors(speed)]
    sink = graph.add("abuffersink")
    nodes.append(sink)
    for before, after in itertools.pairwise(nodes):
        before.link_to(after)
    graph.configure()
    return _TempoGraph(graph, source, sink)
