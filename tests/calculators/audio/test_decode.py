"""Audio uploads decode to 16 kHz mono float32, whatever their format; bad or oversized files are 400s naming file."""

from __future__ import annotations

import io
import time
import wave

import numpy as np
import pytest

from ovserve.calculators.audio import decode
from ovserve.calculators.audio.decode import MIN_SAMPLES, SAMPLE_RATE, AudioLimits, decode_audio, sniff_format
from ovserve.errors import RequestError
from tests.calculators.audio.sounds import FORMATS, encode, sine

#: The rates the tests record at, per format: Opus encodes at 48 kHz at most, the others take CD's 44.1 kHz.
RATES = {"ogg": 48_000, "webm": 48_000}


def dominant_frequency(samples: np.ndarray) -> float:
    """The frequency (Hz) of the largest peak of a 16 kHz signal's spectrum."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.argmax(spectrum) * SAMPLE_RATE / samples.size)


def refused(data: bytes, limits: AudioLimits | None = None) -> RequestError:
    with pytest.raises(RequestError) as caught:
        decode_audio(data, limits)
    error = caught.value
    assert (error.status, error.param, error.code) == (400, "file", "invalid_value")
    return error


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("channels", [1, 2])
def test_each_format_decodes_to_16k_mono_float32_at_the_same_pitch(fmt: str, channels: int):
    rate = RATES.get(fmt, 44_100)
    audio = decode_audio(encode(sine(440, 1.5, rate, channels), rate, fmt))
    assert audio.format == fmt
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert audio.duration == pytest.approx(1.5, abs=0.06)  # codecs pad a few ms (AAC's priming, Opus's pre-skip)
    assert audio.samples.size == pytest.approx(1.5 * SAMPLE_RATE, abs=0.06 * SAMPLE_RATE)
    assert dominant_frequency(audio.samples) == pytest.approx(440, abs=3)
    assert 0.3 < np.abs(audio.samples).max() <= 1.0  # amplitude 0.5 survives, give or take the codec


@pytest.mark.parametrize(("fmt", "rate"), [("wav", 48_000), ("flac", 22_050), ("mp3", 16_000), ("ogg", 16_000),
                                           ("m4a", 8_000), ("wav", 8_000)])
def test_any_input_rate_is_resampled_to_16k(fmt: str, rate: int):
    audio = decode_audio(encode(sine(1000, 1.0, rate, 2), rate, fmt))
    assert audio.duration == pytest.approx(1.0, abs=0.06)
    assert dominant_frequency(audio.samples) == pytest.approx(1000, abs=3)


def test_the_format_comes_from_the_bytes_not_a_name():
    heads = {fmt: encode(sine(440, 0.2, 16_000), 16_000, fmt)[:12] for fmt in FORMATS}
    assert {fmt: sniff_format(head) for fmt, head in heads.items()} == {fmt: fmt for fmt in FORMATS}
    assert sniff_format(b"\xff\xfb\x90\x00") == "mp3"  # an MPEG frame without an ID3 tag
    assert sniff_format(b"\xff\xf1\x50\x80") is None  # ADTS AAC: MPEG sync, but layer 00
    assert sniff_format(b"<html><body>") is None


@pytest.mark.parametrize(("data", "problem"), [
    (b"", "the file is empty"),
    (b"WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nhello\n" * 20, "not in a recognized audio format"),
    (bytes(range(256)) * 40, "not in a recognized audio format"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt garbage garbage", "could not be decoded"),
    (b"OggS" + bytes(500), "could not be decoded"),
])
def test_what_is_not_audio_is_refused_with_the_accepted_formats(data: bytes, problem: str):
    message = refused(data).message
    assert problem in message
    assert "Accepted audio formats: wav, flac, mp3, ogg" in message and "webm" in message and "m4a" in message


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_a_file_cut_inside_its_header_is_refused(fmt: str):
    data = encode(sine(440, 1.0, 16_000), 16_000, fmt)
    message = refused(data[:20]).message
    assert "could not be decoded" in message or "holds no audio samples" in message


def test_a_file_cut_mid_stream_gives_the_audio_before_the_cut_or_a_400():
    wav = encode(sine(440, 2.0, 16_000), 16_000, "wav")
    assert decode_audio(wav[: len(wav) // 2]).duration == pytest.approx(1.0, abs=0.01)
    m4a = encode(sine(440, 2.0, 44_100), 44_100, "m4a")  # its index (moov) is at the end: the cut loses it
    assert "could not be decoded" in refused(m4a[: len(m4a) // 2]).message


def test_corrupt_opus_packets_are_refused():
    data = bytearray(encode(sine(440, 2.0, 48_000), 48_000, "ogg"))
    data[100:2000] = bytes(1900)
    assert "could not be decoded" in refused(bytes(data)).message


def test_a_file_over_the_size_limit_is_refused_with_413_before_it_is_parsed():
    data = encode(sine(440, 1.0, 16_000), 16_000, "wav")
    with pytest.raises(RequestError) as caught:
        decode_audio(data, AudioLimits(max_bytes=len(data) - 1))
    assert (caught.value.status, caught.value.param, caught.value.code) == (413, "file", "file_too_large")
    assert f"{len(data)} bytes is larger than the {len(data) - 1}-byte limit" in caught.value.message
    assert decode_audio(data, AudioLimits(max_bytes=len(data))).duration == pytest.approx(1.0)


def test_two_hours_declared_are_refused_before_a_frame_is_decoded(monkeypatch: pytest.MonkeyPatch):
    """A small file (1.3 MB of FLAC silence) declaring two hours is refused from its header alone."""
    data = encode(np.zeros((1, 7200 * 8000), np.float32), 8000, "flac")
    decoded: list[int] = []
    real = decode._resampled_chunks
    monkeypatch.setattr(decode, "_resampled_chunks", lambda *args: (decoded.append(c.size) or c for c in real(*args)))
    started = time.monotonic()
    message = refused(data).message
    assert time.monotonic() - started < 1.0
    assert "7200.0 s of audio; the limit is 1800 s (30 min)" in message
    assert decoded == []


def test_a_stream_that_declares_no_duration_is_cut_at_the_limit(monkeypatch: pytest.MonkeyPatch):
    """A live webm (as MediaRecorder writes: no duration in its header) of 10 minutes, with a 60 s limit: refused
    after decoding just over 60 s, not all 10 minutes."""
    data = encode(np.zeros((1, 600 * 8000), np.float32), 8000, "webm", {"live": "1"})
    decoded: list[int] = []
    real = decode._resampled_chunks
    monkeypatch.setattr(decode, "_resampled_chunks", lambda *args: (decoded.append(c.size) or c for c in real(*args)))
    message = refused(data, AudioLimits(max_seconds=60)).message
    assert "more audio than allowed; the limit is 60 s (1 min)" in message
    assert 60 * SAMPLE_RATE < sum(decoded) < 61 * SAMPLE_RATE


def test_a_file_just_within_the_duration_limit_decodes():
    data = encode(sine(440, 3.0, 16_000), 16_000, "ogg")
    assert decode_audio(data, AudioLimits(max_seconds=3.1)).duration == pytest.approx(3.0, abs=0.03)
    assert "the limit is 2.5 s" in refused(data, AudioLimits(max_seconds=2.5)).message


def test_a_very_short_clip_is_padded_with_silence_to_what_whisper_reads():
    """OpenVINO GenAI refuses 200 samples or fewer; Whisper pads every input with silence anyway."""
    audio = decode_audio(encode(sine(440, 0.005, 16_000), 16_000, "wav"))  # 80 samples
    assert audio.duration == pytest.approx(0.005)
    assert audio.samples.size == MIN_SAMPLES
    assert np.abs(audio.samples[:80]).max() > 0.3 and not audio.samples[80:].any()


def test_a_file_with_no_samples_is_refused():
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:  # a valid header and an empty data chunk
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(16_000)
    data = buffer.getvalue()
    assert len(data) == 44
    assert "holds no audio samples" in refused(data).message
