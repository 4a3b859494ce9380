"""Token log-probabilities with alternatives, from a teacher-forced pass of the model's own IR.

The engine reports the chosen token's log-probability only. For ``top_logprobs``, completions'
``logprobs: N`` and the prompt's log-probabilities (``echo``), a :class:`ScoringSession` feeds the same
token ids through a second copy of the model, run by the OpenVINO runtime in this process: the prompt
once, then each batch of new tokens as the engine produces them, keeping the model's KV state between
calls, so each token is computed once. The chosen token and its alternatives come from the same
computation, in f32 without dynamic quantization (the batch-invariant settings), so they agree with each
other; they may differ from the engine's own numbers in the last digits, or more on CPUs where the
engine computes in bf16. The cost, about one extra decode step per token, falls on the requests that
ask and on no others; the model loads on the first such request.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ovserve.engine.cpu import BATCH_INVARIANT, detect_cpu
from ovserve.engine.scoring_model import ScoringModelError, scoring_model_path
from ovserve.engine.settings import ModelFiles

log = logging.getLogger("ovserve.engine")

#: The extra input that says from which position on the model computes logits (all of them for the
#: prompt's log-probabilities, the last one otherwise): the vocabulary projection is the costliest layer.
LOGITS_START = "logits_start"
REQUIRED_INPUTS = ("input_ids", "attention_mask")
#: The prompt's logits for every position are computed this many tokens at a time: a whole long prompt's
#: at once would take gigabytes (positions x vocabulary x 4 bytes).
PROMPT_CHUNK = 256
#: At most this many model states of ended sequences are kept for the next ones; the rest are let go at once.
#: Each holds its last sequence's KV state and its last pass's buffers (tens of MB after a scored prompt).
KEEP_IDLE = 2
#: The kept ones are let go too after this long without a new sequence, and the memory goes back to the system.
IDLE_SECONDS = 30.0


class ScorerUnavailable(RuntimeError):
    """This model cannot be scored: the message says why."""


@dataclass(frozen=True, slots=True)
class TokenScore:
    """A token, its log-probability, and the most likely tokens at its position, best first."""

    token_id: int
    #: ``None`` for a prompt's first token, which nothing predicts.
    logprob: float | None
    top: tuple[tuple[int, float], ...] = ()


def score_row(logits: np.ndarray, token_id: int, top: int) -> TokenScore:
    """Log-softmax of one position's ``logits``: ``token_id``'s log-probability and the ``top`` best tokens."""
    shift = float(logits.max())
    normalizer = shift + float(np.log(np.exp(logits - shift, dtype=np.float64).sum()))
    best: tuple[tuple[int, float], ...] = ()
    if top:
        candidates = np.argpartition(logits, -top)[-top:]
        candidates = candidates[np.argsort(-logits[candidates], kind="stable")]
        best = tuple((int(i), float(logits[i]) - normalizer) for i in candidates)
    return TokenScore(int(token_id), float(logits[token_id]) - normalizer, best)


class ScoringSession:
    """One sequence's pass through the scoring model. Methods run in the scorer's threads (``await``)."""

    def __init__(self, scorer: LogitScorer, request: Any) -> None:
        self._scorer = scorer
        self._request = request
        self._length = 0
        self._next: np.ndarray | None = None  # the logits that predict the next token

        self._busy: Future[Any] | None = None

    async def _run(self, function: Any, *args: Any) -> Any:
        self._busy = self._scorer.submit(function, *args)
        return await asyncio.wrap_future(self._busy)

    def close(self) -> None:
        """Give the sequence's model state back to the scorer; call from the event loop's thread. A pass
        still running (the request was cancelled) keeps it until the pass ends."""
        request, self._request = self._request, None
        if request is None:
            return
        busy = self._busy
        if busy is None or busy.done():
            self._scorer._release(request)
        else:
            loop = asyncio.get_running_loop()
            busy.add_done_callback(lambda _: loop.call_soon_threadsafe(self._scorer._release, request))

    def _infer(self, token_ids: Sequence[int], logits_from: int) -> np.ndarray:
        count = len(token_ids)
        total = self._length + count
        inputs = {"input_ids": np.asarray(token_ids, dtype=np.int64)[None],
                  "attention_mask": np.ones((1, total), dtype=np.int64),
                  LOGITS_START: np.array([logits_from], dtype=np.int64)}
        if "position_ids" in self._scorer.inputs:
            inputs["position_ids"] = np.arange(self._length, total, dtype=np.int64)[None]
        if "beam_idx" in self._scorer.inputs:
            inputs["beam_idx"] = np.zeros(1, dtype=np.int32)
        logits = self._request.infer(inputs)["logits"][0]  # a copy of the output, this call's own
        self._length = total
        return logits

    async def prompt(self, token_ids: Sequence[int], *, top: int, all_positions: bool) -> list[TokenScore]:
        """Feed the prompt. With ``all_positions``, score every prompt token (the first, which nothing
        predicts, has no log-probability); otherwise compute only what predicts the first new token, and
        return nothing."""
        return await self._run(self._prompt, list(token_ids), top, all_positions)

    def _prompt(self, token_ids: list[int], top: int, all_positions: bool) -> list[TokenScore]:
        self._request.reset_state()
        if not all_positions:
            self._next = self._infer(token_ids, len(token_ids) - 1)[-1]
            return []
        scores = [TokenScore(token_ids[0], None)]
        for start in range(0, len(token_ids), PROMPT_CHUNK):  # every position's logits, a chunk at a time
            chunk = token_ids[start:start + PROMPT_CHUNK]
            logits = self._infer(chunk, 0)
            rows = [self._next] if start else []
            rows.extend(logits[:-1])
            scores += [score_row(row, token, top) for row, token in zip(rows, chunk[0 if start else 1:], strict=True)]
            self._next = logits[-1].copy()
        return scores

    async def tokens(self, token_ids: Sequence[int], *, top: int, last: bool = False) -> list[TokenScore]:
        """Score new tokens that follow what was fed before; ``last`` when no more will follow."""
        return await self._run(self._tokens, list(token_ids), top, last)

    def _tokens(self, token_ids: list[int], top: int, last: bool) -> list[TokenScore]:
        if not token_ids:
            return []
        assert self._next is not None, "prompt() comes first"
        rows = [self._next]
        feed = token_ids[:-1] if last else token_ids  # the last token's own logits are needed only if more follow
        if feed:
            logits = self._infer(feed, 0)
            rows.extend(logits)
            self._next = logits[-1].copy()
        return [score_row(row, token, top) for row, token in zip(rows, token_ids, strict=False)]


class LogitScorer:
    """The model's IR, compiled on first use. Any number of sequences may be open (each holds its own model
    state); ``threads`` passes run at once, in the scorer's own threads. Requests :meth:`reserve` the tokens they
    will have scored first: at most ``budget`` are reserved at once, so that the scorer's memory stays bounded
    however many requests ask; the others wait their turn, first come first served."""

    def __init__(self, model: ModelFiles, *, threads: int = 4, budget: int = 16384) -> None:
        self.model = model
        self.budget = budget
        #: Tokens reserved by the requests being scored, and the requests waiting for theirs.
        self.reserved = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()
        self.inputs: frozenset[str] = frozenset()
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ovserve-scorer")
        self._loading: asyncio.Future[Any] | None = None
        self._compiled: Any = None
        #: Model states of closed sequences, kept for the next ones (at most KEEP_IDLE, for IDLE_SECONDS).
        self._idle: list[Any] = []
        self._expiry: asyncio.TimerHandle | None = None
        self._unavailable: str | None = None
        #: Sequences open now.
        self.open_sessions = 0
        self._closed = False

    async def reserve(self, tokens: int) -> int:
        """Wait until ``tokens`` (at most the whole budget) can be scored; return what was reserved, for
        :meth:`unreserve` when the request ends. Called in the event loop's thread."""
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

    def submit(self, function: Any, *args: Any) -> Future[Any]:
        """Run ``function(*args)`` in one of the scorer's threads."""
        return self._executor.submit(function, *args)

    async def session(self) -> ScoringSession:
        """A fresh sequence; :meth:`ScoringSession.close` ends it. Raises :class:`ScorerUnavailable` when the
        model cannot be scored."""
        compiled = await self._loaded()
        request = self._idle.pop() if self._idle else compiled.create_infer_request()
        self.open_sessions += 1
        return ScoringSession(self, request)

    def _release(self, request: Any) -> None:
        """A sequence ended: keep its model state for the next one (its state is reset when that one feeds its
        prompt), or let it go if enough are kept. Called in the event loop's thread."""
        self.open_sessions -= 1
        if self._closed:  # a pass that ended after the scorer was closed: nothing is kept, nothing submitted
            return
        if len(self._idle) < KEEP_IDLE:
            self._idle.append(request)
        else:
            del request
            self.submit(_give_memory_back)
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry = asyncio.get_running_loop().call_later(IDLE_SECONDS, self._let_idle_go)

    def _let_idle_go(self) -> None:
        """No sequence began for IDLE_SECONDS: let the kept model states go."""
        self._expiry = None
        if self._idle:
            self._idle.clear()
            self.submit(_give_memory_back)

    async def _loaded(self) -> Any:
        if self._compiled is not None:
            return self._compiled
        if self._unavailable is not None:
            raise ScorerUnavailable(self._unavailable)
        if self._loading is None:  # one load, whoever asks first; a request cancelled meanwhile does not stop it
            self._loading = asyncio.wrap_future(self.submit(self._load))
        try:
            self._compiled = await asyncio.shield(self._loading)
        except (ScorerUnavailable, ScoringModelError) as error:  # about the model: it stays so
            self._unavailable = str(error)
            log.error("%s: log-probabilities with alternatives are unavailable: %s", self.model.display_name, error)
            raise ScorerUnavailable(self._unavailable) from None
        except Exception as error:  # anything else (memory, a killed conversion): the next request tries again
            self._loading = None
            log.error("%s: loading the scoring model failed: %s", self.model.display_name, error)
            raise ScorerUnavailable(f"loading the scoring model failed ({error}); retry") from None
        return self._compiled

    def _load(self) -> Any:
        import openvino as ov

        path = scoring_model_path(self.model)
        core = ov.Core()
        model = core.read_model(path)
        names = {name for port in model.inputs for name in port.get_names()}
        missing = [name for name in REQUIRED_INPUTS if name not in names]
        if missing or not model.get_sinks() or len(model.outputs) != 1:
            raise ScorerUnavailable(
                f"{path} is not a stateful language model with inputs {', '.join(REQUIRED_INPUTS)} and a single "
                f"logits output (as optimum-cli exports them), so ovserve cannot compute its token alternatives")
        _compute_logits_from(model)
        self.inputs = frozenset(names | {LOGITS_START})
        cpu = detect_cpu()
        config = dict(BATCH_INVARIANT.get(cpu.kind, {"INFERENCE_PRECISION_HINT": "f32"}))
        compiled = core.compile_model(model, "CPU", config)
        log.info("%s: scoring model %s loaded for token alternatives (%s)", self.model.display_name, path,
                 ", ".join(f"{k}={v}" for k, v in config.items()))
        return compiled

    def close(self) -> None:
        self._closed = True
        if self._expiry is not None:
            self._expiry.cancel()
        self._idle.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)


def _give_memory_back() -> None:
    """Return freed heap memory to the system (glibc keeps it for reuse otherwise); no-op elsewhere."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _compute_logits_from(model: Any) -> None:
    """Give ``model`` an input ``logits_start``: logits are computed for positions from it on only."""
    import openvino as ov
    import openvino.opset13 as ops

    projection = model.outputs[0].get_node().input(0).get_source_output().get_node()
    if projection.get_type_name() != "MatMul":
        raise ScorerUnavailable(f"the model's logits do not come from a MatMul but a {projection.get_type_name()}")
    hidden = projection.input(0).get_source_output()
    start = ops.parameter([1], ov.Type.i64, name=LOGITS_START)
    start.output(0).get_tensor().set_names({LOGITS_START})
    kept = ops.slice(hidden, start, np.array([np.iinfo(np.int64).max], np.int64), np.array([1], np.int64),
                     np.array([1], np.int64))
    projection.input(0).replace_source_output(kept.output(0))
    model.add_parameters([start])
    model.validate_nodes_and_infer_types()
