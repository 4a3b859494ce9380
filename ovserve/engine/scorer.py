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
import logging
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
        logits = self._request.infer(inputs)["logits"][0]
        self._length = total
        return np.array(logits, copy=True)

    async def prompt(self, token_ids: Sequence[int], *, top: int, all_positions: bool) -> list[TokenScore]:
        """Feed the prompt. With ``all_positions``, score every prompt token (the first, which nothing
        predicts, has no log-probability); otherwise compute only what predicts the first new token, and
        return nothing."""
        return await self._run(self._prompt, list(token_ids), top, all_positions)

    def _prompt(self, token_ids: list[int], top: int, all_positions: bool) -> list[TokenScore]:
        self._request.reset_state()
        logits = self._infer(token_ids, 0 if all_positions else len(token_ids) - 1)
        self._next = logits[-1]
        if not all_positions:
            return []
        return [TokenScore(token_ids[0], None), *(score_row(logits[i - 1], token_ids[i], top)
                                                  for i in range(1, len(token_ids)))]

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
            self._next = logits[-1]
        return [score_row(row, token, top) for row, token in zip(rows, token_ids, strict=False)]


class LogitScorer:
    """The model's IR, compiled on first use, with ``sessions`` sequences scored at a time (more wait)."""

    def __init__(self, model: ModelFiles, *, sessions: int = 4) -> None:
        self.model = model
        self.sessions = sessions
        self.inputs: frozenset[str] = frozenset()
        self._executor = ThreadPoolExecutor(max_workers=sessions, thread_name_prefix="ovserve-scorer")
        self._load_lock = asyncio.Lock()
        self._free: asyncio.Queue[Any] | None = None
        self._unavailable: str | None = None

    def submit(self, function: Any, *args: Any) -> Future[Any]:
        """Run ``function(*args)`` in one of the scorer's threads."""
        return self._executor.submit(function, *args)

    async def session(self) -> ScoringSession:
        """A fresh sequence, once one of the ``sessions`` is free; :meth:`ScoringSession.close` frees it.
        Raises :class:`ScorerUnavailable` when the model cannot be scored."""
        free = await self._loaded()
        return ScoringSession(self, await free.get())

    def _release(self, request: Any) -> None:
        assert self._free is not None
        self._free.put_nowait(request)  # its state is reset when the next session feeds its prompt

    async def _loaded(self) -> asyncio.Queue[Any]:
        async with self._load_lock:
            if self._unavailable is not None:
                raise ScorerUnavailable(self._unavailable)
            if self._free is None:
                try:
                    requests = await asyncio.wrap_future(self.submit(self._load))
                except (ScorerUnavailable, ScoringModelError, RuntimeError) as error:
                    self._unavailable = str(error)
                    log.error("%s: log-probabilities with alternatives are unavailable: %s", self.model.display_name,
                              error)
                    raise ScorerUnavailable(self._unavailable) from None
                self._free = asyncio.Queue()
                for request in requests:
                    self._free.put_nowait(request)
        return self._free

    def _load(self) -> list[Any]:
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
        return [compiled.create_infer_request() for _ in range(self.sessions)]

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


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
