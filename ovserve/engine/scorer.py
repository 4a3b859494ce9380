"""Token log-probabilities with alternatives, as the HTTP process asks for them: the front end of the scoring kind.

The scoring model runs in an engine process of its own (:mod:`ovserve.engine.scoring_kind`), started on the first
request that asks for alternatives or the prompt's log-probabilities, on the model's device; it keeps each sequence's
KV state between calls. Here, :class:`LogitScorer` shares the scorer's memory between requests (a token budget,
first come first served) and opens :class:`ScoringSession` objects, each one sequence in the engine, which a request
closes when it ends, whichever way. The cost, about one extra decode step per token, falls on the requests that ask
and on no others; a killed scoring engine fails the requests it was scoring with 503 and is restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from typing import Any

from ovserve.engine.call_client import CallEngine
from ovserve.engine.kinds import CallJob
from ovserve.engine.process import EngineError
from ovserve.engine.scoring_kind import (
    CloseSessions,
    ScorePrompt,
    ScorerUnavailable,
    ScoreTokens,
    ScoringSpec,
    TokenScore,
)
from ovserve.engine.scoring_model import ScoringModelError
from ovserve.engine.settings import ModelFiles
from ovserve.errors import ModelNotReadyError

__all__ = ["LogitScorer", "ScorerUnavailable", "ScoringSession", "TokenScore"]

log = logging.getLogger("ovserve.engine")

#: Load failures that are about the model, not the moment: the scorer stays unavailable for it. The engine reports a
#: failed load as one line, ``<where> cannot be loaded: <exception type>: <message>``, so they are told by the type.
PERMANENT_FAILURES = (f"{ScorerUnavailable.__name__}:", f"{ScoringModelError.__name__}:")


class ScoringSession:
    """One sequence in the scoring engine, for one choice of one request: :meth:`prompt` first, then :meth:`tokens`
    as they come. :meth:`close` it when the request ends, whichever way (its last tokens close it in the engine)."""

    def __init__(self, scorer: LogitScorer, session: int, generation: int) -> None:
        self._scorer = scorer
        self.id = session
        #: Which start of the scoring engine holds the sequence (a restarted engine has lost it).
        self.generation = generation
        self._closed = False

    async def prompt(self, token_ids: Sequence[int], *, top: int, all_positions: bool) -> list[TokenScore]:
        """Feed the prompt. With ``all_positions``, score every prompt token (the first, which nothing
        predicts, has no log-probability); otherwise compute only what predicts the first new token, and
        return nothing."""
        return await self._scorer.run(self, ScorePrompt(session=self.id, token_ids=tuple(token_ids), top=top,
                                                        all_positions=all_positions))

    async def tokens(self, token_ids: Sequence[int], *, top: int, last: bool = False) -> list[TokenScore]:
        """Score new tokens that follow what was fed before; ``last`` when no more will follow (the engine then
        closes the session)."""
        if not token_ids:
            return []
        scores = await self._scorer.run(self, ScoreTokens(session=self.id, token_ids=tuple(token_ids), top=top,
                                                          last=last))
        if last:
            self._closed = True
        return scores

    def close(self) -> None:
        """End the sequence (no-op once ended); call from the event loop's thread. Never waits: a pass still running
        (the request was cancelled) keeps the sequence until it ends."""
        if not self._closed:
            self._closed = True
            self._scorer.close_session(self)


class LogitScorer:
    """The scoring engine of one model, started on first use (:meth:`session`) on ``device``; ``threads`` passes run at
    once. Requests :meth:`reserve` the tokens they will have scored first: at most ``budget`` are reserved at once, so
    that the scorer's memory stays bounded however many requests ask; the others wait their turn, first come first
    served. Called on the event loop."""

    def __init__(self, model: ModelFiles, *, device: str = "CPU", threads: int = 4, budget: int = 16384,
                 in_process: bool = False) -> None:
        self.model = model
        self.spec = ScoringSpec(model, device, threads)
        self.budget = budget
        self.in_process = in_process
        #: Tokens reserved by the requests being scored, and the requests waiting for theirs.
        self.reserved = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()
        #: The scoring engine, once it has started (``_process`` from when it starts).
        self.engine: CallEngine | None = None
        self._process: CallEngine | None = None
        self._starting: asyncio.Future[CallEngine] | None = None
        self._unavailable: str | None = None
        self._next_session = 0

    async def reserve(self, tokens: int) -> int:
        """Wait until ``tokens`` (at most the whole budget) can be scored; return what was reserved, for
        :meth:`unreserve` when the request ends."""
        tokens = min(tokens, self.budget)
        if not self._waiting and self.reserved + tokens <= self.budget:
            self.reserved += tokens
            return tokens
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append((tokens, turn))
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # granted just as the request was cancelled
                self.unreserve(tokens)
            else:
                with contextlib.suppress(ValueError):  # _grant may have dropped it already
                    self._waiting.remove((tokens, turn))
                self._grant()
            raise
        return tokens

    def unreserve(self, tokens: int) -> None:
        """Give back what :meth:`reserve` returned; the requests waiting get their turn, in order."""
        self.reserved -= tokens
        self._grant()

    def _grant(self) -> None:
        while self._waiting and self.reserved + self._waiting[0][0] <= self.budget:
            tokens, turn = self._waiting.popleft()
            if turn.done():  # cancelled while it waited: it reserves nothing
                continue
            self.reserved += tokens
            turn.set_result(None)

    async def session(self) -> ScoringSession:
        """A fresh sequence; :meth:`ScoringSession.close` ends it. Raises :class:`ScorerUnavailable` when the
        model cannot be scored."""
        engine = await self._started()
        self._next_session += 1
        return ScoringSession(self, self._next_session, engine.starts)

    async def run(self, session: ScoringSession, job: CallJob) -> Any:
        """Run a job of ``session`` in the scoring engine; raises :class:`~ovserve.errors.ModelNotReadyError` (503)
        while the engine restarts, if it dies meanwhile, or if it restarted since the session began (and lost it)."""
        engine = self.engine
        assert engine is not None, "sessions come from a started engine"
        if engine.starts != session.generation:
            raise ModelNotReadyError("the scoring engine restarted while this request was being scored; retry")
        return await engine.call(job)

    def close_session(self, session: ScoringSession) -> None:
        """Have the engine end ``session`` (without waiting). An engine that is not ready, or started again since the
        session began, does not hold it: its process went with it."""
        engine = self.engine
        if engine is not None and engine.ready and engine.starts == session.generation:
            engine.submit(CloseSessions((session.id,)))

    async def _started(self) -> CallEngine:
        if self.engine is not None:
            return self.engine
        if self._unavailable is not None:
            raise ScorerUnavailable(self._unavailable)
        if self._starting is None:  # one start, whoever asks first; a request cancelled meanwhile does not stop it
            self._starting = asyncio.ensure_future(self._start())
        return await asyncio.shield(self._starting)

    async def _start(self) -> CallEngine:
        engine = self._process = CallEngine(self.spec, in_process=self.in_process)
        try:
            await engine.start()
        except EngineError as error:
            reason = str(error)
            if any(marker in reason for marker in PERMANENT_FAILURES):  # about the model: it stays so
                self._unavailable = reason
                log.error("%s: log-probabilities with alternatives are unavailable: %s", self.model.display_name,
                          reason)
                raise ScorerUnavailable(reason) from None
            self._starting = None  # anything else (memory, a killed conversion): the next request tries again
            log.error("%s: starting the scoring engine failed: %s", self.model.display_name, reason)
            raise ScorerUnavailable(f"starting the scoring engine failed ({reason}); retry") from None
        self.engine = engine
        return engine

    def metrics(self) -> dict[str, float]:
        """Gauges for /metrics: whether the scoring engine serves, its starts, and the sequences it holds."""
        engine = self.engine
        if engine is None:
            return {"scoring_engine_ready": 0.0, "scoring_engine_starts": 0.0, "scoring_sessions": 0.0}
        return {"scoring_engine_ready": float(engine.ready), "scoring_engine_starts": float(engine.starts),
                "scoring_sessions": engine.engine_stats.get("scoring_sessions", 0.0) if engine.ready else 0.0}

    async def close(self) -> None:
        """Stop the scoring engine (requests still scoring end with 503)."""
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
            with contextlib.suppress(BaseException):
                await self._starting
        if self._process is not None:
            await self._process.stop()
