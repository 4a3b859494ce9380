"""Generate: one engine request per run; deltas stream out; a run that ends early aborts it."""

import asyncio

import numpy as np
import pytest

from ovserve.calculators.llm.generate import LLMCalculator
from ovserve.calculators.llm.types import Prompt
from ovserve.engine.client import EngineError, TokenDelta
from ovserve.engine.protocol import SamplingParams
from ovserve.framework.errors import CalculatorError
from ovserve.testing import CalculatorRunner, run_calculator
from tests.calculators.llm.fakes import FakeEngine

PROMPT = Prompt(np.array([1, 2, 3]), SamplingParams(max_new_tokens=10))


async def test_engine_deltas_stream_out_with_running_token_counts():
    engine = FakeEngine([TokenDelta((5,), None), TokenDelta((6, 7), None), TokenDelta((8,), "length")])
    out = await run_calculator(LLMCalculator, {"PROMPT": [PROMPT]}, side_packets={"ENGINE": engine})
    deltas = out["DELTAS"]
    assert [d.token_ids for d in deltas] == [(5,), (6, 7), (8,)]
    assert [d.completion_tokens for d in deltas] == [1, 3, 4]
    assert deltas[-1].finish == "length" and all(d.prompt_tokens == 3 for d in deltas)
    assert engine.submitted[0][1] == PROMPT.params


async def test_an_engine_error_fails_the_run():
    engine = FakeEngine([TokenDelta((5,), None), TokenDelta((), "error", EngineError("out of memory"))])
    with pytest.raises(CalculatorError) as caught:
        await run_calculator(LLMCalculator, {"PROMPT": [PROMPT]}, side_packets={"ENGINE": engine})
    assert isinstance(caught.value.cause, EngineError) and "out of memory" in str(caught.value.cause)


async def test_cancelling_the_run_aborts_the_engine_request():
    engine = FakeEngine([TokenDelta((5,), None)], hold=True)
    async with CalculatorRunner(LLMCalculator, side_packets={"ENGINE": engine}) as runner:
        await runner.send("PROMPT", PROMPT)
        assert (await runner.run.get("DELTAS")).value.token_ids == (5,)
        runner.run.cancel("client gone")
        await asyncio.wait_for(runner.run.aclose(), 1)
    assert engine.requests[0].aborted


async def test_n_choices_are_n_engine_requests_with_their_own_seeds_and_indexes():
    engine = FakeEngine([TokenDelta((5,), None), TokenDelta((6,), "stop")])
    prompt = Prompt(np.array([1, 2, 3]), SamplingParams(max_new_tokens=10, seed=40), n=3)
    deltas = (await run_calculator(LLMCalculator, {"PROMPT": [prompt]}, side_packets={"ENGINE": engine}))["DELTAS"]
    assert [params.seed for _, params in engine.submitted] == [40, 41, 42]
    for index in range(3):
        mine = [d for d in deltas if d.index == index]
        assert [d.token_ids for d in mine] == [(5,), (6,)] and [d.completion_tokens for d in mine] == [1, 2]
        assert mine[-1].finish == "stop"


async def test_zero_new_tokens_ends_every_choice_without_the_engine():
    engine = FakeEngine([TokenDelta((5,), "stop")])
    prompt = Prompt(np.array([1, 2, 3]), SamplingParams(max_new_tokens=0), n=2)
    deltas = (await run_calculator(LLMCalculator, {"PROMPT": [prompt]}, side_packets={"ENGINE": engine}))["DELTAS"]
    assert [(d.index, d.token_ids, d.finish, d.completion_tokens) for d in deltas] == [
        (0, (), "length", 0), (1, (), "length", 0)]
    assert engine.submitted == []
