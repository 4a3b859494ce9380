"""Score: requests that ask for alternatives go through the scorer; all others pass through untouched."""

import numpy as np
import pytest

from ovserve.calculators.llm.score import TokenScorerCalculator
from ovserve.calculators.llm.types import GenerationDelta, Prompt
from ovserve.engine.protocol import SamplingParams
from ovserve.engine.scorer import ScorerUnavailable, TokenScore
from ovserve.errors import RequestError
from ovserve.framework.errors import CalculatorError
from ovserve.testing import run_calculator
from tests.calculators.llm.fakes import chat_request, completion_request, planned

PROMPT = Prompt(np.array([5, 6, 7]), SamplingParams(max_new_tokens=4))


class FakeSession:
    def __init__(self, log):
        self.log = log

    async def prompt(self, token_ids, *, top, all_positions):
        self.log.append(("prompt", tuple(token_ids), top, all_positions))
        if not all_positions:
            return []
        return [TokenScore(token_ids[0], None), *(TokenScore(t, -1.0, ((t, -1.0),)) for t in token_ids[1:])]

    async def tokens(self, token_ids, *, top, last=False):
        self.log.append(("tokens", tuple(token_ids), top, last))
        return [TokenScore(t, -0.5, ((99, -0.1), (t, -0.5))[:top]) for t in token_ids]

    def close(self):
        self.log.append(("close",))


class FakeScorer:
    def __init__(self, unavailable=None):
        self.log = []
        self.unavailable = unavailable

    async def session(self):
        if self.unavailable:
            raise ScorerUnavailable(self.unavailable)
        return FakeSession(self.log)

    async def reserve(self, tokens):
        self.log.append(("reserve", tokens))
        return tokens

    def unreserve(self, tokens):
        self.log.append(("unreserve", tokens))


def deltas(*chunks, logprobs=True):
    out = []
    for i, chunk in enumerate(chunks):
        scores = tuple(TokenScore(t, -0.7) for t in chunk) if logprobs else None
        out.append(GenerationDelta(tuple(chunk), "stop" if i == len(chunks) - 1 else None, 3, i, 0, scores))
    return out


async def score(request, token_deltas, scorer):
    inputs = {"DELTAS": token_deltas, "PROMPT": [planned(request, prompt=PROMPT)]}
    return (await run_calculator(TokenScorerCalculator, inputs, side_packets={"SCORER": scorer}))["SCORED"]


async def test_requests_without_alternatives_pass_through_and_never_touch_the_scorer():
    scorer = FakeScorer()
    for request in (chat_request(), chat_request(logprobs=True), completion_request(logprobs=0)):
        sent = deltas((1, 2), (3,), logprobs=request.body.wants_logprobs)
        assert await score(request, sent, scorer) == sent
    assert scorer.log == []


async def test_top_logprobs_replace_the_engine_s_numbers_and_feed_tokens_as_they_come():
    scorer = FakeScorer()
    scored = await score(chat_request(logprobs=True, top_logprobs=2), deltas((1, 2), (3,)), scorer)
    assert [s.logprob for d in scored for s in d.logprobs] == [-0.5, -0.5, -0.5]
    assert scored[0].logprobs[0].top == ((99, -0.1), (1, -0.5))
    # the request reserves its share of the scorer first (1 choice x (3 prompt + 4 max tokens)), gives it back last
    assert scorer.log == [("reserve", 7), ("prompt", (5, 6, 7), 2, False), ("tokens", (1, 2), 2, False),
                          ("tokens", (3,), 2, True), ("close",), ("unreserve", 7)]


async def test_echo_with_logprobs_scores_the_prompt_on_the_first_delta():
    scored = await score(completion_request(echo=True, logprobs=0, max_tokens=0),
                         [GenerationDelta((), "length", 3, 0, 0)], FakeScorer())
    assert [(s.token_id, s.logprob) for s in scored[0].prompt_logprobs] == [(5, None), (6, -1.0), (7, -1.0)]
    assert scored[0].logprobs == ()


async def test_a_model_that_cannot_be_scored_is_a_400_naming_the_field():
    with pytest.raises(CalculatorError) as caught:
        await score(chat_request(logprobs=True, top_logprobs=2), deltas((1,)), FakeScorer("not stateful"))
    error = caught.value.cause
    assert isinstance(error, RequestError) and error.param == "top_logprobs" and "not stateful" in error.message
