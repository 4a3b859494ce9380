"""What a kind of model is to the engine process: a spec that says what to load, and a core that serves it.

The engine process (:mod:`ovserve.engine.worker`) knows no kind of model. The server sends it an
:class:`EngineSpec` in its :class:`~ovserve.engine.messages.Hello`; the engine calls :meth:`EngineSpec.load`, and from
then on hands each submitted job to the :class:`EngineCore` that returned, steps it, and sends what it reports.
Adding a kind means a spec, a core and a front end in the HTTP process; the messages, the client's process handling
(restart, backoff, the watchdog) and the engine loop stay as they are.

Two ways of working:

- **stepping** (the continuous-batching LLM): :meth:`EngineCore.work` runs one engine step over every request;
- **one call** (Whisper, rerank, embeddings, speech, images): :class:`CallCore` runs each job as one pipeline call
  in a thread of its own, ``concurrency`` at a time, and keeps the rest queued. The client bounds that queue
  (:attr:`EngineSpec.max_queue`): a full one refuses with 503 and ``Retry-After`` before anything is sent.
"""

from __future__ import annotations

import abc
import contextlib
import os
import queue
import threading
import time
from collections import deque
from typing import Any, ClassVar

#: One request's news: (request id, a kind-specific payload, ``None`` while it runs or how it finished:
#: ``stop``, ``length``, ``abort`` or ``error: <message>``).
RequestOutput = tuple[int, Any, str | None]


class EngineSpec(abc.ABC):
    """What an engine process is to load and how it serves (pickled across to it in the ``Hello``).

    Subclasses are frozen dataclasses of plain data: they cross the process boundary."""

    #: Whether the kind runs each job as one call (:class:`CallCore`) rather than stepping all of them together.
    one_call: ClassVar[bool] = False

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """The model's readable name, for logs and thread names."""

    @property
    def location(self) -> str:
        """Where the model is (its file or folder), for errors."""
        return self.name

    @property
    def device(self) -> str:
        """The OpenVINO device it runs on."""
        return "CPU"

    @property
    def max_in_flight(self) -> int | None:
        """How many jobs the client lets the engine hold at once (running and queued); ``None``: no bound."""
        return None

    @abc.abstractmethod
    def load(self) -> EngineCore:
        """Load the model and return the core that serves it. Called once, in the engine process; raises with the
        reason the model cannot load (reported to the server in one line)."""


class EngineCore(abc.ABC):
    """Serves one loaded model in the engine process. The engine loop calls it from one thread only."""

    #: After requests finish, whether the loop gives their clients a moment to send the next ones, so that they
    #: join the next step (worth it where requests share steps).
    waits_for_replacements: ClassVar[bool] = False

    def __init__(self) -> None:
        #: What to report next: taken by the loop after each :meth:`work`.
        self.outputs: list[RequestOutput] = []
        #: Jobs that have ended (any way) since the process started.
        self.completed = 0
        #: Jobs taken since the process started.
        self.added = 0
        #: Work rounds run (engine steps, or rounds of the call loop) and those of them that did nothing.
        self.steps = 0
        self.idle_steps = 0
        #: For the jobs begun on since the last report: how long each waited (seconds).
        self.queued: list[float] = []
        #: Why the core cannot go on (a step failed and left the pipeline unusable); the process then exits.
        self.failed: str | None = None

    @abc.abstractmethod
    def add(self, request_id: int, job: Any) -> None:
        """Take a job (its kind's own request type). A job the pipeline refuses ends at once with an ``error:``
        output; it must never stop the core."""

    @abc.abstractmethod
    def abort(self, request_id: int) -> None:
        """Stop a job: drop it if it waits, cancel it if it runs (where the pipeline can). No output is owed."""

    @property
    @abc.abstractmethod
    def live(self) -> int:
        """Jobs still owed to a client (held and not aborted)."""

    @property
    def held(self) -> int:
        """Jobs the core holds, aborted ones it has not let go of yet included."""
        return self.live

    @property
    @abc.abstractmethod
    def busy(self) -> bool:
        """Whether :meth:`work` has anything to do."""

    @property
    def wake_fd(self) -> int | None:
        """A file descriptor that becomes readable when the core has news without being stepped (a call ended);
        the loop waits on it with its socket. ``None`` for cores whose :meth:`work` does everything."""
        return None

    @property
    def progressing(self) -> bool:
        """Whether the core still shows progress; the loop stops its heartbeat when it does not, so that the server's
        watchdog restarts the engine. A stepping core is progressing whenever the loop runs."""
        return True

    @abc.abstractmethod
    def work(self) -> None:
        """Do one round of work without waiting for more: an engine step, or take in what calls finished. Called
        only while :attr:`busy` (or after :attr:`wake_fd` became readable)."""

    def stats(self) -> dict[str, float]:
        """Kind-specific gauges, reported with each step (the LLM's KV cache use)."""
        return {}

    def stop(self) -> None:
        """Abort every job and release what the pipeline holds: the process is about to exit."""
        for request_id in self.request_ids():
            self.abort(request_id)

    def request_ids(self) -> list[int]:
        """The ids of the jobs the core holds."""
        return []


class CallSignal(threading.Event):
    """Set when a running job is to stop. Asking whether it is set is a sign of life: a pipeline's callback that asks
    at each token or step tells the core that the call still works, however long it runs."""

    def __init__(self) -> None:
        super().__init__()
        #: When the call last asked (``time.monotonic()``).
        self.last_asked = time.monotonic()

    def is_set(self) -> bool:
        self.last_asked = time.monotonic()
        return super().is_set()


class CallJob(abc.ABC):
    """A job for a one-call kind."""

    @abc.abstractmethod
    def run(self, pipeline: Any, emit: Any, cancelled: CallSignal) -> Any:
        """Run the job on ``pipeline`` (called in a call thread of the engine process) and return its result.
        ``emit(payload)`` sends a partial result to the client at once (streamed output). Where the pipeline has a
        callback, it should ask ``cancelled.is_set()`` and stop the call when it is: asking also shows that the call
        still works (see :attr:`CallCore.progressing`). Raise to fail the job: the client gets the exception's
        message."""


#: How long a one-call job may go without a sign of life (it began, emitted a partial result, or its callback asked
#: whether it is cancelled) before the core stops showing progress and the server's watchdog restarts the engine:
#: ``$OVSERVE_CALL_TIMEOUT_S``, 600 s by default.
CALL_TIMEOUT_S = float(os.environ.get("OVSERVE_CALL_TIMEOUT_S", "600"))


class CallCore(EngineCore):
    """A one-call kind's core: each :class:`CallJob` runs as one pipeline call in a thread, ``concurrency`` at a time,
    in the order they came; the rest wait. Partial and final results reach the loop through a queue and wake it.
    """

    def __init__(self, pipeline: Any, concurrency: int = 1, call_timeout: float = CALL_TIMEOUT_S) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.concurrency = concurrency
        self.call_timeout = call_timeout
        self.waiting: deque[tuple[int, CallJob, float]] = deque()
        #: Running jobs: id → (the flag that cancels it, when it last showed life: began or emitted).
        self.running: dict[int, tuple[CallSignal, float]] = {}
        self.aborted: set[int] = set()
        self.results: queue.SimpleQueue[RequestOutput] = queue.SimpleQueue()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)

    def add(self, request_id: int, job: Any) -> None:
        if not isinstance(job, CallJob):
            self.outputs.append((request_id, None, f"error: this engine cannot run a {type(job).__name__}"))
            self.completed += 1
            return
        self.added += 1
        self.waiting.append((request_id, job, time.monotonic()))

    def abort(self, request_id: int) -> None:
        for index, (waiting_id, _, _) in enumerate(self.waiting):
            if waiting_id == request_id:
                del self.waiting[index]
                self.completed += 1
                return
        running = self.running.get(request_id)
        if running is not None:
            running[0].set()
            self.aborted.add(request_id)

    def request_ids(self) -> list[int]:
        return [request_id for request_id, _, _ in self.waiting] + list(self.running)

    @property
    def live(self) -> int:
        return len(self.waiting) + len(self.running) - len(self.aborted)

    @property
    def held(self) -> int:
        return len(self.waiting) + len(self.running)

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.running)

    @property
    def wake_fd(self) -> int:
        return self._wake_read

    @property
    def progressing(self) -> bool:
        """Whether every running call showed life within the call timeout."""
        now = time.monotonic()
        return all(now - max(began, signal.last_asked) < self.call_timeout
                   for signal, began in self.running.values())

    def work(self) -> None:
        self.steps += 1
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_read, 4096)
        news = False
        while True:
            try:
                request_id, payload, finish = self.results.get_nowait()
            except queue.Empty:
                break
            news = True
            if finish is not None:
                self.running.pop(request_id, None)
                self.completed += 1
                if request_id in self.aborted:
                    self.aborted.discard(request_id)
                    continue
            if request_id not in self.aborted:
                self.outputs.append((request_id, payload, finish))
        while self.waiting and len(self.running) < self.concurrency:
            request_id, job, added = self.waiting.popleft()
            cancelled = CallSignal()
            self.running[request_id] = (cancelled, time.monotonic())
            self.queued.append(time.monotonic() - added)
            threading.Thread(target=self._call, args=(request_id, job, cancelled), daemon=True,
                             name=f"call-{request_id}").start()
            news = True
        if not news:
            self.idle_steps += 1

    def _call(self, request_id: int, job: CallJob, cancelled: CallSignal) -> None:
        def emit(payload: Any) -> None:
            cancelled.last_asked = time.monotonic()
            self._deliver((request_id, payload, None))

        try:
            result = job.run(self.pipeline, emit, cancelled)
        except Exception as error:  # one bad job must not stop the engine
            reason = " ".join(str(error).split()) or type(error).__name__
            self._deliver((request_id, None, f"error: {reason}"))
        else:
            self._deliver((request_id, result, "abort" if cancelled.is_set() else "stop"))

    def _deliver(self, output: RequestOutput) -> None:
        self.results.put(output)
        with contextlib.suppress(BlockingIOError):  # the pipe is full: the loop is awake anyway
            os.write(self._wake_write, b"!")
