"""Generate: one engine request per run; deltas stream out; a run that ends early aborts it."""

import asyncio

import numpy as np
import pytest

from ovserve.calculators.llm.generate import LLMCalculator
from ovserve.calculators.llm.types import Prompt
from ovserve.engine.client import TokenDelta
from ovserve.engine.process import EngineError
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


async def test_best_of_runs_every_candidate_and_sends_the_n_best_per_token_first():
    def answer(token, *logprobs):
        return [TokenDelta((token,), None, logprobs=logprobs[:1]),
                TokenDelta((token,) * (len(logprobs) - 1), "stop", logprobs=logprobs[1:])]

    engine = FakeEngine([], by_seed={1: answer(10, -3.0), 2: answer(20, -0.1, -0.9), 3: answer(30, -2.0, -2.0, -1.0)})
    prompt = Prompt(np.array([1, 2]), SamplingParams(max_new_tokens=10, seed=1), n=2, best_of=3)
    deltas = (await run_calculator(LLMCalculator, {"PROMPT": [prompt]}, side_packets={"ENGINE": engine}))["DELTAS"]
    assert all(params.logprobs for _, params in engine.submitted)  # asked of the engine to rank the answers
    assert [(d.index, d.token_ids, d.completion_tokens, d.finish) for d in deltas] == [
        (0, (20, 20), 2, "stop"), (1, (30, 30, 30), 3, "stop")]  # means -0.5 and -1.67; -3.0 left out
    assert [d.logprobs for d in deltas] == [None, None]  # the request did not ask for them
