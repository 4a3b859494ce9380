"""The embedding kind behind the engine boundary, on the default embedding model (all-MiniLM-L6-v2): batches of token
lists in, one normalized vector per row out, computed in an engine process (or thread) rather than the caller's; a
killed engine fails its batch with 503 and comes back."""

import asyncio
import os
import signal

import numpy as np
import pytest

from ovserve.engine.embedder import EncoderTokenizer, encoder_settings
from ovserve.engine.embedding_kind import EmbeddingEngine, EmbeddingSpec, EmbedJob
from ovserve.errors import ModelNotReadyError
from ovserve.store.fetch import DEFAULT_EMBEDDING_MODEL, pull

TEXTS = ["A man is eating food.", "A man is eating a piece of bread.", "A monkey is playing drums."]


@pytest.fixture(scope="module")
def encoder_folder():
    return pull(DEFAULT_EMBEDDING_MODEL, quiet=True)


def spec_of(folder):
    return EmbeddingSpec(folder, settings=encoder_settings(folder))


@pytest.fixture(params=[True, False], ids=["in_process", "process"])
async def engine(request, encoder_folder):
    engine = EmbeddingEngine(spec_of(encoder_folder), in_process=request.param)
    await engine.start()
    yield engine
    await engine.stop()


def test_a_job_carries_its_rows_as_they_were():
    rows = [[101, 7592, 102], [101, 102], [101, 2088, 2088, 2088, 102]]
    assert EmbedJob.of(rows).rows() == rows


async def test_rows_come_back_in_order_normalized_and_the_same_alone_as_batched(engine, encoder_folder):
    assert await engine.describe() == 384
    rows = await asyncio.to_thread(EncoderTokenizer(encoder_folder).tokenize, TEXTS)
    batched = await engine.embed(rows)
    assert batched.shape == (3, 384) and batched.dtype == np.float32
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    for row, vector in zip(rows, batched, strict=True):  # padding beside longer rows changes nothing but rounding
        assert float(vector @ (await engine.embed([row]))[0]) == pytest.approx(1.0, abs=1e-4)
    similarity = batched @ batched.T
    assert similarity[0, 1] > similarity[0, 2]  # the model's own order: food is nearer bread than drums


async def test_a_killed_engine_fails_its_batch_with_503_and_is_restarted(encoder_folder):
    engine = EmbeddingEngine(spec_of(encoder_folder), step_timeout=30)
    await engine.start()
    try:
        long_rows = [[101, *range(1000, 1254), 102]] * 256  # seconds of work: still running when the engine dies
        batch = asyncio.ensure_future(engine.embed(long_rows))
        await asyncio.sleep(0.3)
        os.kill(engine._process.pid, signal.SIGKILL)
        with pytest.raises(ModelNotReadyError):
            await asyncio.wait_for(batch, 30)
        with pytest.raises(ModelNotReadyError):  # refused at once while it restarts, never queued
            await engine.embed([[101, 102]])
        for _ in range(300):
            if engine.ready:
                break
            await asyncio.sleep(0.1)
        assert engine.starts == 2 and (await engine.embed([[101, 102]])).shape == (1, 384)
    finally:
        await engine.stop()
