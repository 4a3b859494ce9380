"""The logit scorer: log-softmax and alternatives, and the real model scored incrementally as it is whole."""

import asyncio

import numpy as np
import pytest

from ovserve.engine.scorer import LogitScorer, score_row
from ovserve.engine.settings import find_model_files


def test_a_row_s_log_probabilities_sum_to_one_and_the_best_come_first():
    logits = np.array([1.0, 3.0, -2.0, 3.5, 0.0], dtype=np.float32)
    score = score_row(logits, token_id=1, top=3)
    expected = logits - np.log(np.exp(logits.astype(np.float64)).sum())
    assert score.logprob == pytest.approx(expected[1])
    assert [token for token, _ in score.top] == [3, 1, 0]
    assert [lp for _, lp in score.top] == pytest.approx(expected[[3, 1, 0]])
    assert score_row(logits, 2, top=0).top == ()


def test_huge_logits_do_not_overflow():
    score = score_row(np.array([1e4, 1e4 - 1, -1e4], dtype=np.float32), token_id=0, top=2)
    assert score.logprob == pytest.approx(-np.log1p(np.exp(-1.0)), abs=1e-5)


@pytest.mark.slow
def test_tokens_scored_as_they_come_score_as_the_whole_sequence_does(default_model):
    """Teacher forcing with the model's state kept between calls gives the numbers of one pass over it all."""
    scorer = LogitScorer(find_model_files(default_model), threads=2)
    prompt, answer = [1, 504, 3575, 282, 4649, 314], [7042, 30, 2, 504, 3575]

    async def score():
        whole, parts = await scorer.session(), await scorer.session()
        at_once = await whole.prompt(prompt + answer, top=3, all_positions=True)
        assert await parts.prompt(prompt, top=3, all_positions=False) == []
        pieces = [*await parts.tokens(answer[:1], top=3), *await parts.tokens(answer[1:4], top=3),
                  *await parts.tokens(answer[4:], top=3, last=True)]
        whole.close()
        parts.close()
        return at_once, pieces

    try:
        at_once, pieces = asyncio.run(score())
    finally:
        scorer.close()
    assert at_once[0].token_id == 1 and at_once[0].logprob is None  # nothing predicts the first token
    assert [s.token_id for s in at_once] == prompt + answer
    tail = at_once[len(prompt):]
    assert [s.token_id for s in pieces] == answer
    assert [s.logprob for s in pieces] == pytest.approx([s.logprob for s in tail], abs=1e-3)
    assert [[t for t, _ in s.top] for s in pieces] == [[t for t, _ in s.top] for s in tail]
    for s in tail:  # a token among the alternatives has the same number there
        assert s.logprob <= 0 and dict(s.top).get(s.token_id, s.logprob) == s.logprob


@pytest.mark.slow
def test_more_sequences_than_threads_and_long_prompts_scored_in_chunks(default_model, monkeypatch):
    """Sequences never wait for one another (six open on two threads), and a prompt's logits computed a few
    positions at a time give the numbers of one pass over it."""
    scorer = LogitScorer(find_model_files(default_model), threads=2)
    prompt = [1, 504, 3575, 282, 4649, 314, 7042, 30]

    async def score():
        sessions = [await scorer.session() for _ in range(6)]
        whole = await sessions[0].prompt(prompt, top=2, all_positions=True)
        monkeypatch.setattr("ovserve.engine.scorer.PROMPT_CHUNK", 3)
        chunked = await asyncio.gather(*(s.prompt(prompt, top=2, all_positions=True) for s in sessions[1:]))
        after = await asyncio.gather(*(s.tokens([2], top=2, last=True) for s in sessions))
        for session in sessions:
            session.close()
        return whole, chunked, after

    try:
        whole, chunked, after = asyncio.run(asyncio.wait_for(score(), 120))
    finally:
        scorer.close()
    for each in chunked:
        assert [s.token_id for s in each] == prompt
        assert [s.logprob for s in each[1:]] == pytest.approx([s.logprob for s in whole[1:]], abs=1e-3)
    next_scores = [a[0].logprob for a in after]
    assert max(next_scores) - min(next_scores) < 1e-3  # the same next-token score after either way


async def test_the_scorer_s_budget_makes_requests_wait_their_turn_and_a_cancelled_one_holds_nothing(default_model):
    scorer = LogitScorer(find_model_files(default_model), budget=10)
    try:
        assert await scorer.reserve(6) == 6
        second = asyncio.ensure_future(scorer.reserve(6))
        third = asyncio.ensure_future(scorer.reserve(3))
        await asyncio.sleep(0.01)
        assert not second.done() and not third.done()  # first come, first served: the third waits behind
        third.cancel()
        await asyncio.sleep(0.01)
        scorer.unreserve(6)
        assert await second == 6 and scorer.reserved == 6  # the cancelled third holds nothing
        fourth = asyncio.ensure_future(scorer.reserve(5))
        await asyncio.sleep(0.01)
        fourth.cancel()
        scorer.unreserve(6)  # in the same pass as the cancel, before the cancelled one learns of it
        with pytest.raises(asyncio.CancelledError):
            await fourth
        assert scorer.reserved == 0  # the cancelled one was not granted, and nothing is lost
        assert await scorer.reserve(100) == 10  # a request larger than the budget has it all, alone
    finally:
        scorer.close()


async def test_ended_sequences_model_states_are_let_go_beyond_a_few_and_all_when_idle(default_model, monkeypatch):
    from ovserve.engine import scorer as scoring

    monkeypatch.setattr(scoring, "IDLE_SECONDS", 0.2)
    scorer = LogitScorer(find_model_files(default_model))
    try:
        sessions = [await scorer.session() for _ in range(6)]
        for session in sessions:
            await session.prompt([1, 2, 3], top=1, all_positions=False)
        assert scorer.open_sessions == 6
        for session in sessions:
            session.close()
        assert scorer.open_sessions == 0 and len(scorer._idle) == scoring.KEEP_IDLE  # not all six
        await asyncio.sleep(0.5)
        assert scorer._idle == []  # idle: every model state let go
    finally:
        scorer.close()
