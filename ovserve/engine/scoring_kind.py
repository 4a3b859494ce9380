"""The scoring kind: token log-probabilities with alternatives, from a teacher-forced pass of the model's own IR, in an
engine process of its own, on the model's device.

The LLM engine reports the chosen token's log-probability only. For ``top_logprobs``, completions' ``logprobs: N`` and
the prompt's log-probabilities (``echo``), a session feeds the same token ids through a second copy of the model: the
prompt once, then each batch of new tokens as the LLM engine produces them, keeping the model's KV state between jobs,
so each token is computed once. The sessions live here, in the engine process (:class:`ScoringPipeline`); a job names
its session: :class:`ScorePrompt` opens it, :class:`ScoreTokens` feeds it (and closes it with its last tokens),
:class:`CloseSessions` closes those whose requests ended otherwise. A job whose request was aborted closes its session
itself when it ends, so that a session opened by a job nobody waits for does not outlive it.

The chosen token and its alternatives come from the same computation, on CPU in f32 without dynamic quantization (the
batch-invariant settings), so they agree with each other; they may differ from the LLM engine's own numbers in the
last digits, or more on CPUs where the engine computes in bf16. On another device the model runs at that device's
default precision.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ovserve.engine.kinds import CallCore, CallJob, CallSignal, EngineSpec
from ovserve.engine.scoring_model import scoring_model_path
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


class ScoredSequence:
    """One session's model state (an infer request holding the KV state) and the logits that predict its next token.
    Its ``lock`` is held by the job that feeds it, and by a close, which waits for that job."""

    def __init__(self, request: Any, inputs: frozenset[str]) -> None:
        self.request = request
        self.inputs = inputs
        self.length = 0
        self.next: np.ndarray | None = None
        self.lock = threading.Lock()

    def _infer(self, token_ids: Sequence[int], logits_from: int) -> np.ndarray:
        count = len(token_ids)
        total = self.length + count
        inputs = {"input_ids": np.asarray(token_ids, dtype=np.int64)[None],
                  "attention_mask": np.ones((1, total), dtype=np.int64),
                  LOGITS_START: np.array([logits_from], dtype=np.int64)}
        if "position_ids" in self.inputs:
            inputs["position_ids"] = np.arange(self.length, total, dtype=np.int64)[None]
        if "beam_idx" in self.inputs:
            inputs["beam_idx"] = np.zeros(1, dtype=np.int32)
        logits = self.request.infer(inputs)["logits"][0]  # a copy of the output, this call's own
        self.length = total
        return logits

    def prompt(self, token_ids: list[int], top: int, all_positions: bool,
               cancelled: CallSignal) -> list[TokenScore]:
        """Feed the prompt. With ``all_positions``, score every prompt token (the first, which nothing predicts, has no
        log-probability), a chunk at a time, stopping between chunks once ``cancelled``; otherwise compute only what
        predicts the first new token, and return nothing."""
        self.request.reset_state()
        self.length = 0
        if not all_positions:
            self.next = self._infer(token_ids, len(token_ids) - 1)[-1]
            return []
        scores = [TokenScore(token_ids[0], None)]
        for start in range(0, len(token_ids), PROMPT_CHUNK):
            if cancelled.is_set():
                return scores
            chunk = token_ids[start:start + PROMPT_CHUNK]
            logits = self._infer(chunk, 0)
            rows = [self.next] if start else []
            rows.extend(logits[:-1])
            scores += [score_row(row, token, top) for row, token in zip(rows, chunk[0 if start else 1:], strict=True)]
            self.next = logits[-1].copy()
        return scores

    def tokens(self, token_ids: list[int], top: int, last: bool) -> list[TokenScore]:
        """Score new tokens that follow what was fed before; ``last`` when no more will follow."""
        if not token_ids:
            return []
        if self.next is None:
            raise ValueError("a session's prompt is scored before its tokens")
        rows = [self.next]
        feed = token_ids[:-1] if last else token_ids  # the last token's own logits are needed only if more follow
        if feed:
            logits = self._infer(feed, 0)
            rows.extend(logits)
            self.next = logits[-1].copy()
        return [score_row(row, token, top) for row, token in zip(rows, token_ids, strict=False)]


class ScoringPipeline:
    """The compiled scoring model and the open sessions, by the ids the HTTP process gave them. Ended sessions' model
    states are kept for the next ones (at most :data:`KEEP_IDLE`, for :data:`IDLE_SECONDS`). Called from the core's
    call threads."""

    def __init__(self, compiled: Any, inputs: frozenset[str]) -> None:
        self.compiled = compiled
        self.inputs = inputs
        self.sessions: dict[int, ScoredSequence] = {}
        self.idle: list[Any] = []
        self._lock = threading.Lock()
        self._expiry: threading.Timer | None = None

    def open(self, session: int) -> ScoredSequence:
        """A fresh sequence under ``session`` (one already open under it starts over)."""
        with self._lock:
            sequence = self.sessions.get(session)
            if sequence is None:
                request = self.idle.pop() if self.idle else self.compiled.create_infer_request()
                sequence = self.sessions[session] = ScoredSequence(request, self.inputs)
            return sequence

    def sequence(self, session: int) -> ScoredSequence:
        with self._lock:
            sequence = self.sessions.get(session)
        if sequence is None:
            raise ValueError(f"scoring session {session} is not open (its prompt was not scored, or the scoring engine "
                             f"restarted since)")
        return sequence

    def close(self, sessions: Iterable[int]) -> None:
        """End these sessions (those not open are let be), each once the job feeding it has ended; keep their model
        states for the next sessions, or let them go."""
        for session in sessions:
            with self._lock:
                sequence = self.sessions.pop(session, None)
            if sequence is not None:
                self._release(sequence)

    def _release(self, sequence: ScoredSequence) -> None:
        with sequence.lock:  # a pass still running (its request was aborted) keeps the state until it ends
            request, sequence.request = sequence.request, None
        if request is None:
            return
        with self._lock:
            kept = len(self.idle) < KEEP_IDLE
            if kept:
                self.idle.append(request)
            if self._expiry is not None:
                self._expiry.cancel()
            self._expiry = threading.Timer(IDLE_SECONDS, self._let_idle_go)
            self._expiry.daemon = True
            self._expiry.start()
        if not kept:
            del request
            give_memory_back()

    def _let_idle_go(self) -> None:
        """No sequence ended for IDLE_SECONDS: let the kept model states go."""
        with self._lock:
            idle, self.idle = self.idle, []
        if idle:
            del idle
            give_memory_back()


class ScoringCore(CallCore):
    """The scoring kind's core: jobs run in call threads, ``concurrency`` at a time; reports its open sessions."""

    pipeline: ScoringPipeline

    def stats(self) -> dict[str, float]:
        return {"scoring_sessions": float(len(self.pipeline.sessions)),
                "scoring_idle_states": float(len(self.pipeline.idle))}


@dataclass(frozen=True)
class ScoringSpec(EngineSpec):
    """The model to score (its IR, or its ``.gguf``, converted to IR once), the device, and how many passes run at once.
    Jobs are not bounded by count: the HTTP process's token budget (:meth:`~ovserve.engine.scorer.LogitScorer.reserve`)
    bounds how many sessions are open, and each has at most one job in flight and its close."""

    model: ModelFiles
    device: str = "CPU"
    threads: int = 4

    one_call = True

    @property
    def name(self) -> str:
        return f"{self.model.display_name} (scoring)"

    @property
    def location(self) -> str:
        return str(self.model.path)

    def load(self) -> ScoringCore:
        compiled, inputs = load_scoring_model(self.model, self.device)
        return ScoringCore(ScoringPipeline(compiled, inputs), concurrency=self.threads)


def load_scoring_model(model: ModelFiles, device: str) -> tuple[Any, frozenset[str]]:
    """The model's IR (a ``.gguf`` converted the first time), given a ``logits_start`` input and compiled on ``device``;
    and its inputs' names. Raises :class:`ScorerUnavailable` for a model that is no stateful language model."""
    import openvino as ov

    from ovserve.engine.cpu import BATCH_INVARIANT, detect_cpu
    from ovserve.engine.devices import checked_device

    path = scoring_model_path(model)
    core = ov.Core()
    graph = core.read_model(path)
    names = {name for port in graph.inputs for name in port.get_names()}
    missing = [name for name in REQUIRED_INPUTS if name not in names]
    if missing or not graph.get_sinks() or len(graph.outputs) != 1:
        raise ScorerUnavailable(
            f"{path} is not a stateful language model with inputs {', '.join(REQUIRED_INPUTS)} and a single "
            f"logits output (as optimum-cli exports them), so ovserve cannot compute its token alternatives")
    _compute_logits_from(graph)
    config: dict[str, str] = {}
    if device == "CPU":
        config = dict(BATCH_INVARIANT.get(detect_cpu().kind, {"INFERENCE_PRECISION_HINT": "f32"}))
    compiled = core.compile_model(graph, checked_device(device), config)
    log.info("%s: scoring model %s loaded on %s for token alternatives (%s)", model.display_name, path, device,
             ", ".join(f"{k}={v}" for k, v in config.items()) or "the device's defaults")
    return compiled, frozenset(names | {LOGITS_START})


@dataclass(frozen=True, kw_only=True)
class ScorePrompt(CallJob):
    """Open ``session`` and feed it the prompt: every position scored with ``all_positions`` (``echo``), else only
    what predicts the first new token (the result is then empty)."""

    session: int
    token_ids: tuple[int, ...]
    top: int
    all_positions: bool

    def run(self, pipeline: ScoringPipeline, emit: Any, cancelled: CallSignal) -> list[TokenScore]:
        sequence = pipeline.open(self.session)
        try:
            with sequence.lock:
                return sequence.prompt(list(self.token_ids), self.top, self.all_positions, cancelled)
        finally:
            if cancelled.is_set():  # its request went away: nobody will close the session it opened
                pipeline.close((self.session,))


@dataclass(frozen=True, kw_only=True)
class ScoreTokens(CallJob):
    """Score new tokens of ``session``; with ``last``, no more follow and the session closes."""

    session: int
    token_ids: tuple[int, ...]
    top: int
    last: bool = False

    def run(self, pipeline: ScoringPipeline, emit: Any, cancelled: CallSignal) -> list[TokenScore]:
        sequence = pipeline.sequence(self.session)
        try:
            with sequence.lock:
                if sequence.request is None:
                    raise ValueError(f"scoring session {self.session} was closed")
                return sequence.tokens(list(self.token_ids), self.top, self.last)
        finally:
            if self.last or cancelled.is_set():
                pipeline.close((self.session,))


@dataclass(frozen=True)
class CloseSessions(CallJob):
    """End sessions whose requests ended without their last tokens (aborted, failed); returns how many were open."""

    sessions: tuple[int, ...]

    def run(self, pipeline: ScoringPipeline, emit: Any, cancelled: CallSignal) -> int:
        open_ones = [session for session in self.sessions if session in pipeline.sessions]
        pipeline.close(self.sessions)
        return len(open_ones)


def give_memory_back() -> None:
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
