"""The Whisper kind behind the engine boundary (``ovserve.engine.whisper_kind``), on the tiny Whisper: results as plain
data, streamed pieces, a cancelled call, the prompt kept within what the decoder reads. In an engine thread
(``in_process``) for speed; the HTTP tests run it behind its own process."""

import asyncio

import numpy as np
import pytest

from ovserve.engine.call_client import CallEngine
from ovserve.engine.process import EngineError
from ovserve.engine.whisper_kind import TranscribeJob, WhisperResult, WhisperSpec
from tests.tiny_models import WHISPER, WHISPER_SEGMENT_SECONDS, WHISPER_TEXT


def samples(seconds: float) -> bytes:
    t = np.arange(int(seconds * 16_000)) / 16_000
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32).tobytes()


@pytest.fixture(scope="module")
def spec():
    return WhisperSpec(str(WHISPER), word_timestamps=True)


@pytest.fixture
async def whisper(spec):
    engine = CallEngine(spec, in_process=True, step_timeout=30)
    await engine.start()
    yield engine
    await engine.stop()


def test_the_spec_names_the_model_and_bounds_its_queue(spec):
    assert (spec.name, spec.location, spec.device, spec.max_in_flight) == ("whisper", str(WHISPER), "CPU", 4)
    assert spec.one_call


async def test_a_job_comes_back_as_plain_data_with_its_timestamps(whisper):
    result = await whisper.call(TranscribeJob(samples(40), timestamps=True, language="de", task="translate"))
    assert isinstance(result, WhisperResult) and result.text == WHISPER_TEXT * 2
    assert result.language == "de" and result.output_tokens > 0
    assert [start for start, _, _ in result.segments] == [0.0, 30.0]
    assert [end - start for start, end, _ in result.segments] == pytest.approx([WHISPER_SEGMENT_SECONDS] * 2)
    words = await whisper.call(TranscribeJob(samples(2), timestamps=True, words=True))
    assert "".join(word for word, _, _ in words.words) == WHISPER_TEXT


async def test_a_streamed_job_sends_its_pieces_then_its_result(whisper):
    partials = [piece async for piece in whisper.submit(TranscribeJob(samples(1), stream=True)).partials()]
    *pieces, result = partials
    assert len(pieces) > 1 and "".join(pieces) == result.text == WHISPER_TEXT


async def test_an_aborted_stream_stops_its_call_and_the_next_job_runs(whisper):
    request = whisper.submit(TranscribeJob(samples(600), stream=True))
    stream = request.partials()
    assert isinstance(await anext(stream), str)
    await stream.aclose()  # the client went away
    assert (await whisper.call(TranscribeJob(samples(1)))).text == WHISPER_TEXT
    for _ in range(50):
        if whisper.engine_handles == 0:
            break
        await asyncio.sleep(0.05)
    assert whisper.engine_handles == 0


async def test_a_prompt_longer_than_whisper_reads_keeps_its_end_and_spoils_nothing(whisper):
    """GenAI fails on a prompt of more than 447 tokens, after which sampled calls gave garbage: the job keeps the
    last 223 tokens, as openai-whisper does."""
    long_prompt = "one two three " * 400
    assert (await whisper.call(TranscribeJob(samples(1), prompt=long_prompt))).text == WHISPER_TEXT
    assert (await whisper.call(TranscribeJob(samples(1), temperature=0.9))).text == WHISPER_TEXT


async def test_word_timestamps_on_a_pipeline_built_without_them_fail_that_job_alone():
    engine = CallEngine(WhisperSpec(str(WHISPER)), in_process=True, step_timeout=30)
    await engine.start()
    try:
        with pytest.raises(EngineError, match="attention"):
            await engine.call(TranscribeJob(samples(1), timestamps=True, words=True))
        assert (await engine.call(TranscribeJob(samples(1)))).text == WHISPER_TEXT
    finally:
        await engine.stop()


async def test_a_folder_that_is_no_whisper_fails_its_load_naming_it(tmp_path):
    engine = CallEngine(WhisperSpec(str(tmp_path)), in_process=True)
    with pytest.raises(EngineError, match=f"{tmp_path} cannot be loaded"):
        await engine.start()
