"""The text-to-speech kind behind the engine boundary (``ovserve.engine.tts_kind``), on the tiny SpeechT5: results as
plain data, voices read and checked at load, the bounds of SpeechT5's decoder kept, a failed call that leaves the
pipeline usable, a text the encoder cannot read whole said in parts. In an engine thread (``in_process``) or on the core directly, for speed; the HTTP tests run it behind
its own process."""

import numpy as np
import openvino as ov
import pytest

from ovserve.engine.call_client import CallEngine
from ovserve.engine.kinds import CallSignal
from ovserve.engine.process import EngineError
from ovserve.engine.tts_kind import Speaker, SpeakJob, SpeechResult, SpeechSpec, decoder_bounds, fitting_parts
from tests.tiny_models import (
    SPEECHT5,
    SPEECHT5_OTHER_SPEAKER,
    SPEECHT5_RATE,
    SPEECHT5_SAMPLES_PER_TOKEN,
    SPEECHT5_SPEAKER,
    speecht5_samples,
)

#: Samples a decoder step gives: two frames of 256 samples.
STEP_SAMPLES = 512
VOICES = (("default", str(SPEECHT5_SPEAKER)), ("other", str(SPEECHT5_OTHER_SPEAKER)))


@pytest.fixture(scope="module")
def speaker():
    """The core's pipeline holder, loaded once (jobs run on it directly)."""
    return SpeechSpec(str(SPEECHT5), voices=VOICES).load().pipeline


def samples(result: SpeechResult) -> np.ndarray:
    return np.frombuffer(result.samples, dtype=np.float32)


def test_the_spec_names_the_model_and_bounds_its_queue():
    spec = SpeechSpec(str(SPEECHT5), voices=VOICES)
    assert (spec.name, spec.location, spec.device, spec.max_in_flight) == ("speecht5", str(SPEECHT5), "CPU", 8)
    assert spec.one_call
    assert decoder_bounds(SPEECHT5) == (600, 1876, 2)


def test_a_job_says_its_text_as_float32_bytes_with_the_rate_and_tokens(speaker):
    result = SpeakJob("Hello there.", "default").run(speaker, None, CallSignal())
    assert isinstance(result, SpeechResult)
    assert (result.sample_rate, result.input_tokens) == (SPEECHT5_RATE, 14)
    assert samples(result).size == speecht5_samples("Hello there.")
    assert np.all(np.abs(samples(result)) <= 1.0)


def test_voices_change_the_speech_and_the_built_in_speaker_needs_none(speaker):
    default, other, built_in = (SpeakJob("Hello there.", voice).run(speaker, None, CallSignal())
                                for voice in ("default", "other", None))
    assert samples(default).size == samples(other).size == samples(built_in).size
    assert not np.array_equal(samples(default), samples(other))
    with pytest.raises(ValueError, match="no voice 'nova'"):
        SpeakJob("Hello there.", "nova").run(speaker, None, CallSignal())


def test_a_voice_of_another_size_or_kind_fails_the_load_naming_it(tmp_path):
    np.zeros(16, "<f4").tofile(tmp_path / "short.bin")
    with pytest.raises(ValueError, match=r"the voice 'short': .*short.bin holds 16 numbers; this model takes speaker "
                                         r"embeddings of 512 float32 numbers"):
        SpeechSpec(str(SPEECHT5), voices=(("short", str(tmp_path / "short.bin")),)).load()
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match=r"the voice 'bad': .* cannot be read as a speaker embedding"):
        SpeechSpec(str(SPEECHT5), voices=(("bad", str(tmp_path / "bad.npy")),)).load()
    np.save(tmp_path / "ok.npy", np.ones((1, 512), np.float64))
    assert "ok" in SpeechSpec(str(SPEECHT5), voices=(("ok", str(tmp_path / "ok.npy")),)).load().pipeline.voices


def test_a_text_longer_than_the_encoder_reads_is_said_in_parts(speaker):
    """The encoder reads at most max_text_positions tokens (600 for SpeechT5); the server keeps pieces to 250
    characters, but a character can be read as several tokens (NFKC turns U+FDFA into 18): such a text is said in
    parts that fit. Shown with a table of 100 positions, so that the decoder runs few steps."""
    bounded = Speaker(speaker.pipeline, speaker.tokenizer, max_text_positions=100, voices=speaker.voices)
    ligatures = "\ufdfa " * 12  # 24 characters, 97 tokens: read whole
    assert fitting_parts(bounded, ligatures) == [(ligatures, 97)]
    longer = "\ufdfa " * 30  # 60 characters, 241 tokens
    parts = fitting_parts(bounded, longer)
    assert len(parts) > 2 and all(count <= 100 for _, count in parts)
    assert "".join(text for text, _ in parts) == longer
    result = SpeakJob(longer).run(bounded, None, CallSignal())
    assert samples(result).size == sum(count for _, count in parts) * SPEECHT5_SAMPLES_PER_TOKEN
    assert result.input_tokens == sum(count for _, count in parts)


def test_the_decoder_is_kept_within_its_position_table(speaker):
    """A text whose length bound (tokens x maxlenratio / 2 decoder steps) would run the decoder past its position
    table would fail the call (and, left as it is, every call after it): the job lowers the bound to fit. Shown with
    a table of 40 positions, so that the decoder runs few steps (SpeechT5's own has 1,876)."""
    bounded = Speaker(speaker.pipeline, speaker.tokenizer, max_speech_positions=40, voices=speaker.voices)
    assert bounded.bounded_maxlenratio(14) is None  # "Hello there.": 28 steps fit
    short = SpeakJob("Hello there.").run(bounded, None, CallSignal())
    assert samples(short).size == speecht5_samples("Hello there.")
    text = "A text of forty characters, or so, here."  # 42 tokens: 84 steps would not fit
    long = SpeakJob(text).run(bounded, None, CallSignal())
    steps = samples(long).size // STEP_SAMPLES
    assert steps == 38 and samples(long).size % STEP_SAMPLES == 0


def test_a_failed_call_loads_the_pipeline_again(speaker):
    """A SpeechT5 call that fails inside its decoder leaves its state behind, and every later call fails (measured
    on GenAI 2026.4 with a decoder run past its positions): after any failed call the pipeline is loaded again."""
    before = speaker.pipeline
    with pytest.raises(RuntimeError):
        speaker.generate("Hello.", ov.Tensor(np.zeros((1, 16), np.float32)), {})
    assert speaker.pipeline is not before
    assert samples(SpeakJob("Hello.").run(speaker, None, CallSignal())).size == speecht5_samples("Hello.")


def test_a_cancelled_job_says_nothing(speaker):
    signal = CallSignal()
    signal.set()
    assert SpeakJob("Hello there.").run(speaker, None, signal) is None


async def test_jobs_run_behind_the_engine_boundary_one_after_another():
    engine = CallEngine(SpeechSpec(str(SPEECHT5), voices=VOICES), in_process=True, step_timeout=30)
    await engine.start()
    try:
        first, second = engine.submit(SpeakJob("One.")), engine.submit(SpeakJob("Two, three.", "other"))
        assert samples(await first.result()).size == speecht5_samples("One.")
        assert samples(await second.result()).size == speecht5_samples("Two, three.")
        with pytest.raises(EngineError, match="no voice 'nova'"):
            await engine.call(SpeakJob("Four.", "nova"))
    finally:
        await engine.stop()
