"""The logit scorer as requests use it, over its engine process, on the default model: tokens scored as they come
score as the whole sequence does, the token budget, sessions that end any way are closed in the engine, and a killed
scoring engine fails its requests with 503 and comes back."""

import asyncio
import os
import signal

import pytest

from ovserve.engine.scorer import LogitScorer, ScorerUnavailable
from ovserve.engine.settings import find_model_files
from ovserve.errors import ModelNotReadyError
from tests.tiny_models import RERANKER

PROMPT, ANSWER = [1, 504, 3575, 282, 4649, 314], [7042, 30, 2, 504, 3575]


@pytest.fixture
def model(default_model):
    return find_model_files(default_model)


async def engine_sessions(scorer: LogitScorer, expected: float, timeout: float = 30) -> float:
    """The sessions the scoring engine reports, once they are ``expected`` (or the last report after ``timeout``)."""
    for _ in range(int(timeout / 0.05)):
        if scorer.engine.engine_stats.get("scoring_sessions") == expected:
            break
        await asyncio.sleep(0.05)
    return scorer.engine.engine_stats.get("scoring_sessions")


@pytest.mark.slow
async def test_tokens_scored_as_they_come_score_as_the_whole_sequence_does(model):
    """Teacher forcing with the model's state kept between calls gives the numbers of one pass over it all."""
    scorer = LogitScorer(model, threads=2)
    try:
        whole, parts = await scorer.session(), await scorer.session()
        assert scorer.engine.ready and scorer.engine._process is not None  # an engine process of its own
        at_once = await whole.prompt(PROMPT + ANSWER, top=3, all_positions=True)
        assert await parts.prompt(PROMPT, top=3, all_positions=False) == []
        pieces = [*await parts.tokens(ANSWER[:1], top=3), *await parts.tokens(ANSWER[1:4], top=3),
                  *await parts.tokens(ANSWER[4:], top=3, last=True)]
        whole.close()
        parts.close()
        assert await engine_sessions(scorer, 0) == 0
    finally:
        await scorer.close()
    assert at_once[0].token_id == 1 and at_once[0].logprob is None  # nothing predicts the first token
    assert [s.token_id for s in at_once] == PROMPT + ANSWER
    tail = at_once[len(PROMPT):]
    assert [s.token_id for s in pieces] == ANSWER
    assert [s.logprob for s in pieces] == pytest.approx([s.logprob for s in tail], abs=1e-3)
    assert [[t for t, _ in s.top] for s in pieces] == [[t for t, _ in s.top] for s in tail]
    for s in tail:  # a token among the alternatives has the same number there
        assert s.logprob <= 0 and dict(s.top).get(s.token_id, s.logprob) == s.logprob


@pytest.mark.slow
async def test_more_sequences_than_threads_and_long_prompts_scored_in_chunks(model, monkeypatch):
    """Sequences never wait for one another (six open on two threads), and a prompt's logits computed a few
    positions at a time give the numbers of one pass over it (the engine in a thread, so that the chunk size can be
    changed)."""
    scorer = LogitScorer(model, threads=2, in_process=True)
    prompt = [*PROMPT, 7042, 30]
    try:
        sessions = [await scorer.session() for _ in range(6)]
        whole = await sessions[0].prompt(prompt, top=2, all_positions=True)
        monkeypatch.setattr("ovserve.engine.scoring_kind.PROMPT_CHUNK", 3)
        chunked = await asyncio.wait_for(asyncio.gather(
            *(s.prompt(prompt, top=2, all_positions=True) for s in sessions[1:])), 120)
        after = await asyncio.gather(*(s.tokens([2], top=2, last=True) for s in sessions))
    finally:
        await scorer.close()
    for each in chunked:
        assert [s.token_id for s in each] == prompt
        assert [s.logprob for s in each[1:]] == pytest.approx([s.logprob for s in whole[1:]], abs=1e-3)
    next_scores = [a[0].logprob for a in after]
    assert max(next_scores) - min(next_scores) < 1e-3  # the same next-token score after either way


async def test_the_scorer_s_budget_makes_requests_wait_their_turn_and_a_cancelled_one_holds_nothing(model):
    scorer = LogitScorer(model, budget=10)
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
        assert scorer.engine is None  # reserving starts no engine: only a session does
    finally:
        await scorer.close()


@pytest.mark.slow
async def test_sessions_of_requests_that_went_away_are_closed_in_the_engine(model):
    scorer = LogitScorer(model)
    long_prompt = (PROMPT + ANSWER) * 150  # 1,650 tokens, every position scored: a pass of a second or more
    try:
        # a request cancelled in the middle of a pass, whose score node then closes its session (as it does)
        closed_by_its_node = await scorer.session()
        running = asyncio.ensure_future(closed_by_its_node.prompt(long_prompt, top=5, all_positions=True))
        await asyncio.sleep(0.3)
        running.cancel()
        closed_by_its_node.close()
        # a request cancelled in the middle of a pass that never closes its session: the aborted job closes it
        forgotten = await scorer.session()
        running = asyncio.ensure_future(forgotten.prompt(long_prompt, top=5, all_positions=True))
        await asyncio.sleep(0.3)
        running.cancel()
        # a request that failed after its prompt was scored
        failed = await scorer.session()
        await failed.prompt(PROMPT, top=1, all_positions=False)
        assert scorer.engine.engine_stats["scoring_sessions"] >= 1
        failed.close()
        assert await engine_sessions(scorer, 0) == 0
    finally:
        await scorer.close()


@pytest.mark.slow
async def test_a_killed_scoring_engine_fails_its_requests_with_503_and_is_restarted(model):
    scorer = LogitScorer(model)
    try:
        session = await scorer.session()
        running = asyncio.ensure_future(session.prompt((PROMPT + ANSWER) * 150, top=5, all_positions=True))
        await asyncio.sleep(0.3)
        os.kill(scorer.engine._process.pid, signal.SIGKILL)
        with pytest.raises(ModelNotReadyError):
            await asyncio.wait_for(running, 30)
        meanwhile = await scorer.session()
        with pytest.raises(ModelNotReadyError):  # refused at once while it restarts, never queued
            await meanwhile.prompt(PROMPT, top=1, all_positions=False)
        meanwhile.close()
        for _ in range(600):
            if scorer.engine.ready:
                break
            await asyncio.sleep(0.1)
        with pytest.raises(ModelNotReadyError, match="restarted while this request was being scored"):
            await session.tokens([2], top=1)  # the new engine never had this request's sequence
        session.close()  # nothing to close there, and nothing is sent
        again = await scorer.session()
        assert scorer.engine.starts == 2 and await again.prompt(PROMPT, top=1, all_positions=False) == []
        assert [s.token_id for s in await again.tokens([2], top=1, last=True)] == [2]
        assert scorer.metrics()["scoring_engine_starts"] == 2
    finally:
        await scorer.close()


async def test_a_model_that_is_no_stateful_language_model_is_unavailable_for_good_and_says_why():
    scorer = LogitScorer(find_model_files(RERANKER))  # a BERT cross-encoder: no KV state, no logits over a vocabulary
    try:
        for _ in range(2):
            with pytest.raises(ScorerUnavailable, match="is not a stateful language model"):
                await scorer.session()
        assert scorer.engine is None and scorer._process.starts == 1  # not started again for the second request
        assert not scorer._process.ready
    finally:
        await scorer.close()
