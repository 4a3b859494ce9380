"""Speech samples encoded in OpenAI's formats, whole and streamed, decoded back with PyAV: the container and codec
each format names, the rate, and a duration that matches the samples given (``speed`` divides it). Never the sound."""

import io

import av
import numpy as np
import pytest

from ovserve.calculators.speech.encode import FORMATS, PCM_RATE, AudioEncoder, output_rate, tempo_factors

RATE = 16_000
#: What each format decodes as: (PyAV's container format names, codec).
DECODED = {"mp3": ("mp3", "mp3float"), "opus": ("ogg", "opus"), "aac": ("aac", "aac"), "flac": ("flac", "flac"),
           "wav": ("wav", "pcm_s16le")}
#: How much longer than its samples a format may decode (an encoder's frame of padding and priming: LAME 1,152
#: samples, AAC 1,024; a streamed mp3 has no header that tells the decoder to trim them).
SLACK_SECONDS = 0.15


def sentences(*lengths: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.2 * rng.standard_normal(n)).astype(np.float32) for n in lengths]


def decode(data: bytes, response_format: str) -> tuple[str, str, int, float]:
    """(container, codec, rate, seconds) of an encoded file; pcm is read as OpenAI's raw 24 kHz 16-bit samples."""
    if response_format == "pcm":
        assert len(data) % 2 == 0
        return "pcm", "pcm_s16le", PCM_RATE, len(data) / 2 / PCM_RATE
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        assert stream.channels == 1
        return container.format.name, stream.codec_context.name, stream.rate, samples / stream.rate


def encode(response_format: str, parts: list[np.ndarray], speed: float = 1.0, stream: bool = False) -> list[bytes]:
    encoder = AudioEncoder(response_format, RATE, speed, stream)
    chunks = [encoder.add(part) for part in parts]
    return [*chunks, encoder.finish()]


@pytest.mark.parametrize("response_format", sorted(FORMATS))
@pytest.mark.parametrize("stream", [False, True])
def test_each_format_decodes_to_the_samples_given(response_format, stream):
    parts = sentences(14_336, 31_744, 3_072)
    chunks = encode(response_format, parts, stream=stream)
    container, codec, rate, seconds = decode(b"".join(chunks), response_format)
    if response_format in DECODED:
        assert (container.split(",")[0], codec) == DECODED[response_format]
    assert rate == (48_000 if response_format == "opus" else PCM_RATE if response_format == "pcm" else RATE)
    expected = sum(part.size for part in parts) / RATE
    assert expected - 0.005 <= seconds <= expected + SLACK_SECONDS
    if not stream:
        assert all(chunk == b"" for chunk in chunks[:-1])  # the whole file comes at the end


@pytest.mark.parametrize("response_format", sorted(FORMATS))
def test_a_stream_gives_each_sentence_s_audio_as_it_is_added(response_format):
    parts = sentences(16_000, 16_000, 16_000)
    chunks = encode(response_format, parts, stream=True)
    assert all(chunks[:3])  # every sentence's audio goes out before the next is given
    first = b"".join(chunks[:1])
    if response_format == "pcm":  # raw samples: the first chunk is the first sentence, resampled
        assert abs(len(first) / 2 / PCM_RATE - 1.0) < 0.01


def test_a_streamed_wav_says_its_length_is_open_and_a_whole_one_says_it():
    streamed = b"".join(encode("wav", sentences(16_000), stream=True))
    whole = b"".join(encode("wav", sentences(16_000)))
    assert streamed[:4] == whole[:4] == b"RIFF" and streamed[8:12] == whole[8:12] == b"WAVE"
    assert int.from_bytes(streamed[4:8], "little") == 0xFFFFFFFF
    assert int.from_bytes(whole[4:8], "little") == len(whole) - 8


@pytest.mark.parametrize("response_format", ["wav", "mp3", "pcm"])
@pytest.mark.parametrize("speed", [0.25, 0.5, 2.0, 4.0])
def test_speed_stretches_the_time_and_keeps_the_rate(response_format, speed):
    parts = sentences(16_000, 24_000)
    for stream in (False, True):
        _, _, rate, seconds = decode(b"".join(encode(response_format, parts, speed, stream)), response_format)
        assert rate == (PCM_RATE if response_format == "pcm" else RATE)
        expected = 2.5 / speed
        assert abs(seconds - expected) <= 0.05 * expected + SLACK_SECONDS, (stream, seconds, expected)


def test_tempo_factors_stay_within_what_atempo_takes():
    assert tempo_factors(2.0) == [2.0] and tempo_factors(0.5) == [0.5]
    low = tempo_factors(0.25)
    assert len(low) == 2 and all(factor >= 0.5 for factor in low) and np.prod(low) == pytest.approx(0.25)


def test_opus_takes_its_own_rates_and_pcm_is_openai_s():
    assert output_rate("opus", 16_000) == 16_000 and output_rate("opus", 22_050) == 48_000
    assert output_rate("pcm", 16_000) == output_rate("pcm", 24_000) == PCM_RATE
    assert output_rate("flac", 22_050) == 22_050
    assert {name: fmt.media_type for name, fmt in FORMATS.items()} == {
        "mp3": "audio/mpeg", "opus": "audio/ogg; codecs=opus", "aac": "audio/aac", "flac": "audio/flac",
        "wav": "audio/wav", "pcm": "audio/pcm"}


def test_an_encoder_let_go_early_closes_quietly():
    encoder = AudioEncoder("mp3", RATE, stream=True)
    assert encoder.add(sentences(16_000)[0])
    encoder.close()
    encoder.close()
