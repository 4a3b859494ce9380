"""The scoring kind's engine side: log-softmax and alternatives, and the sessions the pipeline keeps (run here
directly, as the engine process's call threads run them)."""

import threading

import numpy as np
import pytest

from ovserve.engine import scoring_kind
from ovserve.engine.kinds import CallSignal
from ovserve.engine.scoring_kind import CloseSessions, ScorePrompt, ScoreTokens, ScoringSpec, score_row
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


@pytest.fixture(scope="module")
def core(default_model):
    """The scoring core as its engine process loads it."""
    return ScoringSpec(find_model_files(default_model), threads=2).load()


def run(job, core, cancelled=False):
    flag = CallSignal()
    if cancelled:
        flag.set()
    return job.run(core.pipeline, None, flag)


@pytest.mark.slow
def test_sessions_are_kept_until_closed_and_their_model_states_let_go_beyond_a_few_and_all_when_idle(core, monkeypatch):
    monkeypatch.setattr(scoring_kind, "IDLE_SECONDS", 0.2)
    for session in range(1, 7):
        run(ScorePrompt(session=session, token_ids=(1, 2, 3), top=1, all_positions=False), core)
    assert core.stats()["scoring_sessions"] == 6
    assert run(CloseSessions((1, 2, 3, 4, 5, 99)), core) == 5  # 99 was never open: let be
    scores = run(ScoreTokens(session=6, token_ids=(4, 5), top=2, last=True), core)  # its last tokens close it
    assert [s.token_id for s in scores] == [4, 5] and all(len(s.top) == 2 for s in scores)
    assert core.stats() == {"scoring_sessions": 0, "scoring_idle_states": scoring_kind.KEEP_IDLE}  # not all six
    threading.Event().wait(0.5)
    assert core.stats()["scoring_idle_states"] == 0  # idle: every model state let go


@pytest.mark.slow
def test_a_job_whose_request_was_aborted_closes_its_session(core):
    run(ScorePrompt(session=10, token_ids=(1, 2, 3), top=1, all_positions=True), core, cancelled=True)
    assert 10 not in core.pipeline.sessions
    run(ScorePrompt(session=11, token_ids=(1, 2, 3), top=1, all_positions=False), core)
    run(ScoreTokens(session=11, token_ids=(4,), top=1), core, cancelled=True)
    assert core.stats()["scoring_sessions"] == 0


@pytest.mark.slow
def test_tokens_of_a_session_that_is_not_open_fail_naming_it(core):
    with pytest.raises(ValueError, match="scoring session 42 is not open"):
        run(ScoreTokens(session=42, token_ids=(4,), top=1), core)
