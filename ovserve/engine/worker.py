"""The engine process: loads a ContinuousBatchingPipeline and runs its step loop.

``ContinuousBatchingPipeline.step()`` holds the GIL for a whole step, so it runs here, in a process
of its own, never beside the HTTP event loop. Between steps it reads new requests and aborts from
its socket; after each step it sends one message with every request's new tokens.

Started by :class:`~ovserve.engine.client.EngineClient` as ``python -m ovserve.engine.worker FD PID``, where
FD is its end of a socket pair and PID the server's; the messages on it are those of :mod:`ovserve.engine.messages`,
the first a :class:`~ovserve.engine.messages.Hello` with the protocol version and the engine's settings.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import socket
import sys
import time
from typing import Any

from ovserve.engine.messages import (
    PROTOCOL_VERSION,
    Abort,
    Add,
    Hello,
    LoadFailed,
    Ready,
    Step,
    Stop,
    version_mismatch,
)
from ovserve.engine.protocol import (
    FINISH_LENGTH,
    FINISH_STOP,
    EngineInfo,
    SamplingParams,
    decode_frames,
    encode_frame,
)
from ovserve.engine.settings import EngineSettings

#: While it works, the step loop reports at least this often, even steps that finish no token (prefill), so
#: that the server's watchdog can tell a long run of steps from a step that hangs.
HEARTBEAT_SECONDS = 0.5

#: How long the step loop waits, after requests finish, for the next requests of their clients
#: (``$OVSERVE_REPLACEMENT_WAIT_MS`` sets it, for measuring what it buys: benchmarks/README.md).
REPLACEMENT_WAIT_S = float(os.environ.get("OVSERVE_REPLACEMENT_WAIT_MS", "20")) / 1000

#: Steps after which a cancelled request's handle is let go. OpenVINO GenAI frees a cancelled request within
#: its next two steps, but leaves its status at CANCEL whenever other requests are scheduled (measured on
#: 2026.4: ``tests/engine/test_engine_client.py``), so waiting for the status to change would hold the handle,
#: and keep the loop stepping, forever.
RELEASE_STEPS = 2


def check_device(device: str, available: list[str]) -> None:
    """Raise ``ValueError`` naming the devices that exist if ``device`` (or one it lists) does not."""
    head, _, rest = device.partition(":")
    wanted = [d.strip() for d in rest.split(",") if d.strip()] if head in ("AUTO", "HETERO", "MULTI") else [device]
    bases = {d.split(".")[0] for d in available}
    missing = [d for d in wanted if d not in available and d.split(".")[0] not in bases]
    if missing:
        raise ValueError(f"device '{device}' is not available: {', '.join(missing)} not found; "
                         f"this machine has {', '.join(available) or 'no OpenVINO devices'}")


def load_pipeline(settings: EngineSettings) -> Any:
    import openvino
    import openvino_genai

    check_device(settings.device, openvino.Core().available_devices)
    scheduler = openvino_genai.SchedulerConfig()
    scheduler.cache_size = settings.cache_size
    scheduler.max_num_seqs = settings.max_num_seqs
    scheduler.max_num_batched_tokens = settings.max_num_batched_tokens
    scheduler.enable_prefix_caching = settings.enable_prefix_caching
    scheduler.dynamic_split_fuse = settings.dynamic_split_fuse
    return openvino_genai.ContinuousBatchingPipeline(
        str(settings.model.path), scheduler, settings.device, settings.plugin_config)


class StepLoop:
    """Owns the pipeline and every live request's handle (a dropped handle drops the request)."""

    def __init__(self, pipeline: Any, sock: socket.socket) -> None:
        import numpy
        import openvino
        import openvino_genai

        self.numpy = numpy
        self.pipeline = pipeline
        self.sock = sock
        self.buffer = bytearray()
        self.handles: dict[int, Any] = {}
        self.tensor = openvino.Tensor
        self.running = openvino_genai.GenerationStatus.RUNNING
        self.finished = openvino_genai.GenerationStatus.FINISHED
        self.cancelled = openvino_genai.GenerationStatus.CANCEL
        self.reason_stop = openvino_genai.GenerationFinishReason.STOP
        self.reason_length = openvino_genai.GenerationFinishReason.LENGTH
        self.outputs: list[tuple[int, Any, str | None]] = []
        #: The chosen tokens' log-probabilities of this step's outputs, for the requests that asked.
        self.logprobs: dict[int, list[float]] = {}
        self.wants_logprobs: set[int] = set()
        #: How many more tokens each request may have (its max_new_tokens less those it has had).
        self.room: dict[int, int] = {}
        #: Cancelled requests whose handles are kept until the pipeline has let them go: id → steps at the abort.
        self.aborted: dict[int, int] = {}
        self.stopping = False
        #: Why a step failed: after that the pipeline is in an unknown state (OpenVINO GenAI cannot step
        #: again), so the loop reports the failure to the requests in flight and ends.
        self.failed: str | None = None
        self.added = 0
        self.completed = 0
        #: Engine steps run since the process started (batched requests share steps), and those of them that
        #: scheduled no request (a step that frees an aborted request may; hundreds a second mean a spinning loop).
        self.steps = 0
        self.idle_steps = 0
        #: The (running, held) request counts last reported.
        self.reported = (0, 0)
        self.last_report = time.monotonic()
        #: Requests added and not yet seen scheduled: id → when added (in order), and the waits measured.
        self.unscheduled: dict[int, float] = {}
        self.queued: list[float] = []
        #: KV cache in use at the last step, percent (as the pipeline reports it).
        self.cache_percent = 0.0

    def after_step(self, step_started: float) -> None:
        """Read the pipeline's metrics once per step: the KV cache in use (percent), and how long the requests
        the engine began on in this step had waited since they were added.

        The pipeline does not say which requests it scheduled, only how many of all it holds
        (``requests - scheduled_requests`` wait); it takes waiting requests first come, first served, so
        the oldest of those not seen scheduled yet are the ones it began on. An estimate: a running request
        the scheduler pauses for want of KV cache counts as waiting too."""
        try:
            metrics = self.pipeline.get_metrics()
            self.cache_percent = float(metrics.cache_usage)
            scheduled = int(metrics.scheduled_requests)
            waiting = max(0, int(metrics.requests) - scheduled)
        except Exception:  # metrics must never stop the engine
            return
        if scheduled == 0:
            self.idle_steps += 1
        for _ in range(len(self.unscheduled) - waiting):
            request_id = next(iter(self.unscheduled))
            self.queued.append(max(0.0, step_started - self.unscheduled.pop(request_id)))

    def send(self, message: Ready | Step) -> None:
        self.sock.sendall(encode_frame(message))

    def receive(self, timeout: float | None) -> bool:
        """Apply the commands that arrive within ``timeout`` seconds (``None``: wait for some, ``0``:
        only those already here). False when the other end has gone."""
        while True:
            readable, _, _ = select.select([self.sock], [], [], timeout)
            if not readable:
                return True
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return False
            self.buffer += chunk
            for message in decode_frames(self.buffer):
                self.apply(message)
            timeout = 0

    def wait_for_replacements(self, finished: int) -> bool:
        """After requests finish, give their clients' next requests a moment to arrive so that they
        join the next step instead of waiting a whole (possibly long, prefilling) step. Clients that
        send their next request as soon as one ends (chat UIs, agents, benchmarks) arrive within a
        few milliseconds; others lose at most ``REPLACEMENT_WAIT_S`` once per finished request."""
        deadline = time.monotonic() + REPLACEMENT_WAIT_S
        target = self.added + finished
        while self.added < target:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            if not self.receive(remaining):
                return False
        return True

    def apply(self, message: Add | Abort | Stop) -> None:
        if isinstance(message, Add):
            self.add(message.request_id, message.token_ids, message.params)
        elif isinstance(message, Abort):
            self.abort(message.request_id)
        elif isinstance(message, Stop):
            for request_id in list(self.handles):
                self.abort(request_id)
            self.stopping = True
        else:
            raise TypeError(f"the engine cannot take a {type(message).__name__} message")

    def abort(self, request_id: int) -> None:
        """Cancel a request. Its handle is kept until the pipeline has released it."""
        handle = self.handles.get(request_id)
        if handle is not None and request_id not in self.aborted:
            handle.cancel()
            self.aborted[request_id] = self.steps
            self.unscheduled.pop(request_id, None)

    def release(self, request_id: int) -> None:
        """Let go of a request's handle and what the loop keeps about it."""
        del self.handles[request_id]
        self.aborted.pop(request_id, None)
        self.unscheduled.pop(request_id, None)
        self.wants_logprobs.discard(request_id)
        self.room.pop(request_id, None)

    @property
    def live(self) -> int:
        """Requests still generating for a client (held and not aborted)."""
        return len(self.handles) - len(self.aborted)

    def add(self, request_id: int, token_ids: bytes, params: SamplingParams) -> None:
        ids = self.numpy.frombuffer(token_ids, dtype=self.numpy.int64).reshape(1, -1)
        try:
            handle = self.pipeline.add_request(request_id, self.tensor(ids), params.to_generation_config())
        except Exception as error:  # one bad request must not stop the engine
            self.outputs.append((request_id, (), f"error: {type(error).__name__}: {error}"))
            return
        self.handles[request_id] = handle
        self.room[request_id] = params.max_new_tokens
        self.unscheduled[request_id] = time.monotonic()
        if params.logprobs:
            self.wants_logprobs.add(request_id)
        self.added += 1

    def collect(self) -> None:
        for request_id, handle in list(self.handles.items()):
            new_ids, new_logprobs, finish = self.read(request_id, handle)
            status = handle.get_status()
            aborted_at = self.aborted.get(request_id)
            if aborted_at is not None:
                if status not in (self.running, self.cancelled) or self.steps - aborted_at >= RELEASE_STEPS:
                    self.release(request_id)
                continue  # the client already ended it
            room = self.room[request_id]
            if len(new_ids) > room or (len(new_ids) == room and finish is None):
                # All the tokens it may have. With prompt lookup, OpenVINO GenAI 2026.4 can accept proposed tokens
                # past max_new_tokens (measured: 69 tokens for 64, n 20 with 16 proposed a step): cut them here.
                del new_ids[room:]
                if new_logprobs is not None:
                    del new_logprobs[room:]
                finish = FINISH_LENGTH
                self.completed += 1
                if status == self.running:
                    self.abort(request_id)  # the client has its answer; the engine lets the rest go
                else:
                    self.release(request_id)
            elif status != self.running or finish is not None:  # ended: once, whichever the engine said first
                self.completed += 1
                if status == self.running:
                    self.abort(request_id)  # the pipeline lets it go at its next steps
                else:
                    self.release(request_id)
                if finish is None:
                    finish = FINISH_STOP if status == self.finished else f"error: the engine ended it ({status.name})"
            else:
                self.room[request_id] = room - len(new_ids)
            if new_ids or finish is not None:
                self.outputs.append((request_id, new_ids, finish))
                if new_logprobs:
                    self.logprobs[request_id] = new_logprobs

    def read(self, request_id: int, handle: Any) -> tuple[list[int], list[float] | None, str | None]:
        """A request's new tokens since the last step, their log-probabilities (if it asked) and how the engine
        says it finished (``None`` while it runs)."""
        new_ids: list[int] = []
        new_logprobs: list[float] | None = [] if request_id in self.wants_logprobs else None
        finish = None
        while handle.can_read():
            for output in handle.read().values():
                new_ids.extend(output.generated_ids)
                if new_logprobs is not None:
                    new_logprobs.extend(output.generated_log_probs)
                if output.finish_reason == self.reason_stop:
                    finish = FINISH_STOP
                elif output.finish_reason == self.reason_length:
                    finish = FINISH_LENGTH
        return new_ids, new_logprobs, finish

    def run(self) -> None:
        """Step while there is work; wait for commands when there is none. Ends when the client goes
        away or asks to stop (after releasing every request)."""
        try:
            self._run()
        except (BrokenPipeError, ConnectionResetError):  # the server went away: nothing is left to report to
            self.apply(Stop())
            self.drain()

    def drain(self) -> None:
        """Step until the pipeline has let every (cancelled) request go, and once more: a cancelled request keeps
        its KV blocks until the step after, and the pipeline logs what it still holds as leaked when it goes."""
        for _ in range(1000):
            if not self.pipeline.has_non_finished_requests():
                break
            self.pipeline.step()
        if self.added:
            self.pipeline.step()
        self.handles.clear()
        self.aborted.clear()

    def _run(self) -> None:
        connected = True
        while True:
            if self.failed is not None:
                print(f"ovserve engine: a step failed ({self.failed}); the pipeline cannot go on, so this "
                      f"process exits and the server starts a new one", file=sys.stderr, flush=True)
                return
            busy = self.live > 0 or self.pipeline.has_non_finished_requests()
            if not busy:
                for request_id in list(self.aborted):  # the pipeline holds nothing: none of them is running
                    self.release(request_id)
            if self.stopping and not busy:
                self.drain()
                return
            if connected and not self.receive(None if not busy and not self.outputs else 0):
                connected = False
                self.apply(Stop())
                continue
            completed_before = self.completed
            if busy:
                try:
                    self.steps += 1
                    step_started = time.monotonic()
                    self.pipeline.step()
                except Exception as error:  # the pipeline is broken now: fail what is in flight, then exit
                    reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
                    for request_id in list(self.handles):
                        self.outputs.append((request_id, (), f"error: engine step failed: {reason}"))
                    self.handles.clear()
                    self.aborted.clear()
                    self.failed = reason
                else:
                    self.after_step(step_started)
                    self.collect()
            running, held = self.live, len(self.handles)
            heartbeat = busy and time.monotonic() - self.last_report > HEARTBEAT_SECONDS
            if self.outputs or (running, held) != self.reported or heartbeat or self.queued:
                if connected:
                    self.send(Step(self.outputs, running, self.cache_percent, self.steps, self.logprobs,
                                   self.queued, held, self.idle_steps))
                self.outputs = []
                self.logprobs = {}
                self.queued = []
                self.reported = (running, held)
                self.last_report = time.monotonic()
            if connected and self.handles and self.completed > completed_before and not self.stopping:
                connected = self.wait_for_replacements(self.completed - completed_before)
                if not connected:
                    self.apply(Stop())


def _read_hello(sock: socket.socket) -> EngineSettings:
    """The settings of the server's :class:`Hello`; a server of another protocol version is told so, and the
    process exits."""
    buffer = bytearray()
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise SystemExit(0)
        buffer += chunk
        messages = decode_frames(buffer)
        if messages:
            hello = messages[0]
            if not isinstance(hello, Hello) or hello.version != PROTOCOL_VERSION:
                theirs = hello.version if isinstance(hello, Hello) else f"before {PROTOCOL_VERSION} ({hello!r:.40})"
                sock.sendall(encode_frame(version_mismatch(theirs)))
                raise SystemExit(2)
            return hello.settings


def engine_main(sock: socket.socket, settings: EngineSettings) -> None:
    """Load the model, report, then serve until the socket closes."""
    started = time.monotonic()
    try:
        pipeline = load_pipeline(settings)
    except Exception as error:  # reported to the server, which fails the model load, in one line
        reason = f"{settings.model.path} cannot be loaded: {type(error).__name__}: {' '.join(str(error).split())}"
        sock.sendall(encode_frame(LoadFailed(reason)))
        return
    loop = StepLoop(pipeline, sock)
    loop.send(Ready(EngineInfo(settings.device, time.monotonic() - started, os.getpid())))
    loop.run()


def serve_in_thread(sock: socket.socket) -> None:
    """The engine of an in-process :class:`~ovserve.engine.client.EngineClient`: what :func:`main` does, in a thread
    of the server's process (no process of its own, so no parent to watch and no signals to leave)."""
    try:
        sock.setblocking(True)
        engine_main(sock, _read_hello(sock))
    except SystemExit:
        pass
    finally:
        sock.close()


PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """Exit when the server process (pid ``parent``) dies, even in the middle of a step: Linux sends SIGKILL
    then (``PR_SET_PDEATHSIG``). SIGINT and SIGTERM sent to the whole process group (a terminal's Ctrl-C,
    systemd, ``docker stop``) are left to the server: it drains its requests, then stops this process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # systemd and `kill -TERM -PGID` signal the whole group too
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the socket closing still ends the loop between steps
        return
    if os.getppid() != parent:  # the parent died before the signal was set up
        os._exit(1)


def main() -> None:
    _die_with_parent(int(sys.argv[2]))
    sock = socket.socket(fileno=int(sys.argv[1]))
    sock.setblocking(True)
    engine_main(sock, _read_hello(sock))


if __name__ == "__main__":
    main()
