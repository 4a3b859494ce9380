"""Completions with several prompts (an array of strings or of token arrays), stage by stage: each prompt is
tokenized and limited on its own, answered by its own engine requests, scored, echoed and counted once, and
prompt ``p``'s choice ``j`` is choice ``p x n + j``."""

import json

import numpy as np
import pytest

from ovserve.calculators.llm.detokenize import DetokenizerCalculator
from ovserve.calculators.llm.generate import LLMCalculator
from ovserve.calculators.llm.response import OpenAIResponseCalculator
from ovserve.calculators.llm.schema import MAX_PROMPTS
from ovserve.calculators.llm.score import TokenScorerCalculator
from ovserve.calculators.llm.types import GenerationDelta, Prompt, TextDelta
from ovserve.engine.client import TokenDelta
from ovserve.engine.protocol import SamplingParams
from ovserve.testing import run_calculator
from tests.calculators.llm.fakes import FakeEngine, completion_request, fake_tokenizer, planned
from tests.calculators.llm.test_request import deserialize
from tests.calculators.llm.test_request import refused as refused_body
from tests.calculators.llm.test_score import FakeScorer
from tests.calculators.llm.test_tokenize import refused, tokenize


@pytest.mark.parametrize("prompt", ["ab", ["ab"], [97, 98], [[97, 98]]])
async def test_every_openai_prompt_shape_with_one_prompt_gives_the_same_engine_prompt(prompt):
    engine_prompt = await tokenize(completion_request(prompt=prompt, max_tokens=3))
    assert engine_prompt.token_ids.tolist() == [97, 98] and engine_prompt.others == ()


async def test_several_prompts_each_get_their_own_token_ids_and_room_for_new_tokens():
    prompt = await tokenize(completion_request(prompt=["a", "bcd", "ef"]), context_length=100)
    assert [(ids.tolist(), params.max_new_tokens) for ids, params in prompt.parts()] == [
        ([97], 99), ([98, 99, 100], 97), ([101, 102], 98)]
    tokens = await tokenize(completion_request(prompt=[[1, 2], [3]], max_tokens=5, seed=7))
    assert [(ids.tolist(), params.max_new_tokens, params.seed) for ids, params in tokens.parts()] == [
        ([1, 2], 5, 7), ([3], 5, 7)]


@pytest.mark.parametrize(("prompt", "words"), [
    ([], "at least 1 item"),
    (["a"] * (MAX_PROMPTS + 1), f"at most {MAX_PROMPTS} items"),
    ([[1]] * (MAX_PROMPTS + 1), f"at most {MAX_PROMPTS} items"),
    (["a", ""], "must not be empty"),
    ([[1], []], "at least 1 item"),
    ([[1], ["a"]], "valid integer"),
    ([True, False], "got True, a bool"),  # JSON booleans, numeric strings and floats are no token ids
    ([[1], [True]], "got True, a bool"),
    ([[1, "2"]], "got '2', a str"),
    ([[1.0]], "got 1.0, a float"),
    (["a", [1]], "one kind only (got a string and a token array)"),
    ([1, [1]], "one kind only (got a token array and a token id)"),
])
async def test_prompt_arrays_out_of_bounds_are_refused_naming_prompt(prompt, words):
    error = await refused_body("/v3/completions", {"model": "m", "prompt": prompt})
    assert error.status == 400 and error.param.startswith("prompt") and words in error.message, error.message


async def test_several_prompts_are_refused_by_the_prompt_that_does_not_fit():
    error = await refused(completion_request(prompt=["a", "x" * 120]), context_length=100)
    assert error.param == "prompt[1]" and error.code == "context_length_exceeded" and "120 tokens" in error.message
    error = await refused(completion_request(prompt=[[1], [300]], max_tokens=2))
    assert error.param == "prompt[1]" and "300" in error.message


async def test_several_prompts_may_hold_no_more_of_the_engine_than_the_largest_single_request():
    # best_of_limit 20 x context 100 = 2,000 tokens: 20 prompts of 50 + 50 new tokens fill it, 21 do not fit
    assert await tokenize(completion_request(prompt=["x" * 50] * 20, max_tokens=50), context_length=100)
    error = await refused(completion_request(prompt=["x" * 50] * 21, max_tokens=50), context_length=100)
    assert error.param == "prompt" and "2100 tokens" in error.message and "2000" in error.message
    error = await refused(completion_request(prompt=["x" * 50] * 10, max_tokens=50, n=3), context_length=100)
    assert error.param == "prompt" and "3000 tokens" in error.message


async def test_several_prompts_may_ask_for_no_more_answers_in_all_than_the_most_prompts():
    assert await tokenize(completion_request(prompt=["x"] * 64, n=2, max_tokens=1))
    error = await refused(completion_request(prompt=["x"] * 43, n=3, max_tokens=1))
    assert error.param == "prompt" and "129 answers (3 each)" in error.message and "limit of 128" in error.message
    error = await refused(completion_request(prompt=["x"] * 10, n=2, best_of=13, max_tokens=1))
    assert error.param == "prompt" and "130 answers (13 each)" in error.message


async def test_the_scoring_budget_counts_every_prompt():
    request = completion_request(prompt=["abc", "de"], max_tokens=1, logprobs=1, echo=True)
    assert await tokenize(request, max_scored_tokens=7)  # (3 + 1) + (2 + 1)
    error = await refused(request, max_scored_tokens=6)
    assert error.param == "logprobs" and "7 tokens scored" in error.message and "2 prompts" in error.message


TWO = Prompt(np.array([1, 2, 3]), SamplingParams(max_new_tokens=4, seed=10), n=2,
             others=((np.array([4, 5]), SamplingParams(max_new_tokens=6, seed=10)),))


async def generate(prompt, engine):
    return (await run_calculator(LLMCalculator, {"PROMPT": [prompt]}, side_packets={"ENGINE": engine}))["DELTAS"]


async def test_each_prompts_choices_are_engine_requests_numbered_prompt_by_prompt():
    engine = FakeEngine([TokenDelta((7,), None), TokenDelta((8,), "stop")])
    deltas = await generate(TWO, engine)
    assert [(ids.tolist(), params.max_new_tokens, params.seed) for ids, params in engine.submitted] == [
        ([1, 2, 3], 4, 10), ([1, 2, 3], 4, 11), ([4, 5], 6, 10), ([4, 5], 6, 11)]
    for index, prompt_tokens in ((0, 3), (1, 3), (2, 2), (3, 2)):
        mine = [d for d in deltas if d.index == index]
        assert [(d.token_ids, d.prompt_tokens, d.completion_tokens) for d in mine] == [
            ((7,), prompt_tokens, 1), ((8,), prompt_tokens, 2)]


async def test_echo_alone_answers_every_prompts_choices_without_the_engine():
    prompt = Prompt(np.array([1, 2, 3]), SamplingParams(max_new_tokens=0), n=1,
                    others=((np.array([4]), SamplingParams(max_new_tokens=0)),))
    engine = FakeEngine([])
    deltas = await generate(prompt, engine)
    assert [(d.index, d.prompt_tokens, d.finish) for d in deltas] == [(0, 3, "length"), (1, 1, "length")]
    assert engine.submitted == []


async def test_best_of_ranks_each_prompts_answers_apart():
    # seeds 1, 2, 3 answer each prompt; the answer of seed 2 is the best, then seed 3's
    by_seed = {1: [TokenDelta((1,), "stop", None, (-3.0,))], 2: [TokenDelta((2,), "stop", None, (-0.5,))],
               3: [TokenDelta((3,), "stop", None, (-1.0,))]}
    prompt = Prompt(np.array([9]), SamplingParams(max_new_tokens=2, seed=1), n=2, best_of=3,
                    others=((np.array([8, 8]), SamplingParams(max_new_tokens=2, seed=1)),))
    deltas = await generate(prompt, FakeEngine([], by_seed=by_seed))
    assert [(d.index, d.token_ids, d.prompt_tokens) for d in deltas] == [
        (0, (2,), 1), (1, (3,), 1), (2, (2,), 2), (3, (3,), 2)]


async def test_each_prompt_is_scored_once_and_its_scores_go_to_its_own_choices():
    scorer = FakeScorer()
    request = completion_request(prompt=[[5, 6], [7, 8, 9]], n=2, max_tokens=1, logprobs=1, echo=True)
    sent = [GenerationDelta((i,), "length", 2 if i < 2 else 3, 1, i) for i in range(4)]
    inputs = {"DELTAS": sent, "PROMPT": [planned(request, prompt=TWO_SCORED)]}
    scored = (await run_calculator(TokenScorerCalculator, inputs, side_packets={"SCORER": scorer}))["SCORED"]
    assert [[s.token_id for s in d.prompt_logprobs] for d in scored] == [[5, 6], [5, 6], [7, 8, 9], [7, 8, 9]]
    prompts = [entry for entry in scorer.log if entry[0] == "prompt"]
    assert [(ids, all_positions) for _, ids, _, all_positions in prompts] == [
        ((5, 6), True), ((5, 6), False), ((7, 8, 9), True), ((7, 8, 9), False)]
    assert scorer.log[0] == ("reserve", 2 * ((2 + 1) + (3 + 1)))


TWO_SCORED = Prompt(np.array([5, 6]), SamplingParams(max_new_tokens=1), n=2,
                    others=((np.array([7, 8, 9]), SamplingParams(max_new_tokens=1)),))


async def test_echo_puts_each_prompt_in_front_of_its_own_choices():
    for prompt in (["Q:", "Hi"], [[81, 58], [72, 105]]):
        request = completion_request(prompt=prompt, n=2, echo=True, max_tokens=1)
        deltas = [GenerationDelta((33,), "length", 2, 1, index) for index in (0, 2, 3, 1)]
        inputs = {"DELTAS": deltas, "PROMPT": [planned(request)]}
        texts = (await run_calculator(DetokenizerCalculator, inputs,
                                      side_packets={"TOKENIZER": fake_tokenizer()}))["TEXT"]
        assert [(t.index, t.text) for t in texts] == [(0, "Q:!"), (2, "Hi!"), (3, "Hi!"), (1, "Q:!")]


async def serialize(request, texts):
    out = await run_calculator(OpenAIResponseCalculator, {"REQUEST": [request], "TEXT": texts})
    return out["HTTP_RESPONSE_PAYLOAD"]


# prompt 0 has 4 tokens, prompt 1 has 6; n = 2
CHOICES = [TextDelta("a", "stop", 4, 1, 0), TextDelta("bc", "length", 6, 2, 3), TextDelta("d", "stop", 4, 1, 1),
           TextDelta("efg", "length", 6, 3, 2)]


async def test_the_answer_waits_for_every_prompts_choices_and_counts_each_prompt_once():
    (payload,) = await serialize(completion_request(prompt=["x", "y"], n=2), CHOICES)
    body = json.loads(payload.body)
    assert [(c["index"], c["text"]) for c in body["choices"]] == [(0, "a"), (1, "d"), (2, "efg"), (3, "bc")]
    assert body["usage"] == {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17}


async def test_a_stream_of_several_prompts_ends_once_with_one_usage_chunk():
    request = completion_request(prompt=["x", "y"], n=2, stream=True, stream_options={"include_usage": True})
    payloads = await serialize(request, CHOICES)
    assert [p.last for p in payloads] == [False, False, False, True]
    body = b"".join(p.body for p in payloads).decode()
    blocks = [block.removeprefix("data: ") for block in body.split("\n\n") if block]
    assert blocks.count("[DONE]") == 1 and blocks[-1] == "[DONE]"
    chunks = [json.loads(b) for b in blocks[:-1]]
    finishes = [(c["choices"][0]["index"], c["choices"][0]["finish_reason"]) for c in chunks
                if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finishes == [(0, "stop"), (3, "length"), (1, "stop"), (2, "length")]
    assert [c["usage"] for c in chunks if c["usage"]] == [
        {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17}]


async def test_a_request_with_several_prompts_deserializes_with_its_count():
    (request,) = await deserialize("/v3/completions", {"model": "m", "prompt": [[1, 2], [3]], "n": 2})
    assert request.body.prompt_count == 2 and request.body.choice_count == 4
