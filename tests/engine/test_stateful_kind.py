"""The one-request LLM kind (OpenVINO GenAI's stateful LLMPipeline) seen from the server: tokens stream, requests
wait their turn within a bound, an abort frees the engine, finish reasons (real model, in an engine process)."""

import asyncio

import numpy as np
import pytest
import pytest_asyncio

from ovserve.engine.process import EngineBusyError, EngineError
from ovserve.engine.protocol import SamplingParams
from ovserve.engine.settings import find_model_files
from ovserve.engine.stateful_kind import StatefulEngine, StatefulLLMSpec

PROMPT = np.array([1, 9690, 198, 2683, 359, 253, 5356, 2, 198, 1, 4093, 198, 504, 2, 198, 1, 520, 9531, 198])
GREEDY = SamplingParams(max_new_tokens=6, temperature=0, ignore_eos=True)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine(default_model):
    engine = StatefulEngine(StatefulLLMSpec(find_model_files(default_model), max_requests=2), step_timeout=30)
    await engine.start()
    yield engine
    await engine.stop()


async def tokens_of(stream):
    deltas = [delta async for delta in stream]
    assert all(delta.error is None for delta in deltas), deltas
    return [token for delta in deltas for token in delta.token_ids], deltas[-1].finish


@pytest.mark.asyncio(loop_scope="module")
async def test_tokens_stream_one_at_a_time_and_the_answer_ends_at_max_tokens(engine):
    stream = engine.submit(PROMPT, GREEDY)
    assert stream.prompt_tokens == PROMPT.size
    deltas = [delta async for delta in stream]
    assert sum(len(delta.token_ids) for delta in deltas) == 6 and deltas[-1].finish == "length"
    assert len(deltas) >= 6  # each token as it came, then the end
    again, finish = await tokens_of(engine.submit(PROMPT, GREEDY))
    assert again == [t for d in deltas for t in d.token_ids] and finish == "length"  # greedy: the same answer


@pytest.mark.asyncio(loop_scope="module")
async def test_an_answer_a_stop_token_ends_finishes_with_stop(engine):
    (first,), _ = await tokens_of(engine.submit(PROMPT, SamplingParams(max_new_tokens=1, temperature=0)))
    stopped = SamplingParams(max_new_tokens=50, temperature=0, stop_token_ids=(first,))
    tokens, finish = await tokens_of(engine.submit(PROMPT, stopped))
    assert finish == "stop" and len(tokens) <= 1


@pytest.mark.asyncio(loop_scope="module")
async def test_requests_wait_their_turn_up_to_the_bound_and_an_abort_frees_the_engine(engine):
    endless = SamplingParams(max_new_tokens=5000, temperature=0, ignore_eos=True)
    running = engine.submit(PROMPT, endless)
    waiting = engine.submit(PROMPT, GREEDY)  # max_requests=2: one may wait
    with pytest.raises(EngineBusyError, match="has 2 requests running or queued"):
        engine.submit(PROMPT, GREEDY)
    stream = aiter(running)
    first = await anext(stream)
    assert first.token_ids and first.finish is None
    running.abort()
    await stream.aclose()
    tokens, finish = await asyncio.wait_for(tokens_of(waiting), 30)  # the aborted call stopped at its next token
    assert len(tokens) == 6 and finish == "length"
    assert engine.calls.in_flight == 0


@pytest.mark.asyncio(loop_scope="module")
async def test_a_request_the_engine_refuses_fails_alone(engine):
    bad = SamplingParams(max_new_tokens=4, temperature=0, json_schema="{not json")
    deltas = [delta async for delta in engine.submit(PROMPT, bad)]
    assert deltas[-1].finish == "error" and isinstance(deltas[-1].error, EngineError)
    tokens, finish = await tokens_of(engine.submit(PROMPT, GREEDY))
    assert len(tokens) == 6 and finish == "length"


async def test_prompt_lookup_is_refused_at_load(default_model):
    spec = StatefulLLMSpec(find_model_files(default_model), plugin_config={"prompt_lookup": True})
    engine = StatefulEngine(spec, in_process=True)
    with pytest.raises(EngineError, match="prompt_lookup runs on the continuous-batching pipeline"):
        await engine.start()


async def test_a_missing_device_fails_the_load_naming_what_there_is(default_model):
    engine = StatefulEngine(StatefulLLMSpec(find_model_files(default_model), device="NPU"), in_process=True)
    with pytest.raises(EngineError, match="device 'NPU' is not available: NPU not found; this machine has CPU"):
        await engine.start()
