"""The HTTP process's side of an engine: start the engine process, submit jobs, deliver what comes back.

:class:`EngineProcess` knows no kind of model. It starts the engine process for an
:class:`~ovserve.engine.kinds.EngineSpec`, speaks to it over a socket pair driven by the event loop (never blocking
it), delivers each step's news to the request it is for, and restarts the engine if the process dies or hangs:
requests in flight then end with an error, never hang. Each kind has a front end on it:
:class:`~ovserve.engine.client.EngineClient` for text generation, :class:`~ovserve.engine.call_client.CallEngine` for
the one-call kinds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import threading
import time
from typing import Any, Protocol

from ovserve.engine.kinds import EngineSpec
from ovserve.engine.messages import PROTOCOL_VERSION, Abort, Hello, LoadFailed, Ready, Step, Stop, Submit
from ovserve.engine.protocol import FINISH_ABORT, EngineInfo, decode_frames, encode_frame
from ovserve.engine.worker import serve_in_thread
from ovserve.errors import ModelNotReadyError, RequestError, ServerShuttingDownError
from ovserve.framework.metrics import Histogram

QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

#: Default for :attr:`EngineClient.step_timeout`: far above any one step on a CPU (a step is bounded by
#: max_num_batched_tokens), below what a client waits before it gives up.
DEFAULT_STEP_TIMEOUT = 60.0

log = logging.getLogger("ovserve.engine")

class EngineError(RuntimeError):
    """The engine could not load its model, or it failed while serving."""



class EngineBusyError(RequestError):
    """A one-call engine holds as many jobs as it may (running and queued): HTTP 503 with ``Retry-After``."""

    def __init__(self, name: str, limit: int) -> None:
        super().__init__(f"the engine of {name} has {limit} requests running or queued, as many as it takes; "
                         f"retry shortly", status=503, code="engine_queue_full")



class RequestSink(Protocol):
    """Where :class:`EngineProcess` delivers one request's news."""

    def _push(self, payload: Any, finish: str | Exception | None) -> None:
        """Called on the event loop with each payload the engine sent, and ``finish`` once it ended (an exception
        when the engine died or the server stops)."""
        ...



class _EngineProtocol(asyncio.Protocol):
    def __init__(self, client: EngineProcess) -> None:
        self.client = client
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        for message in decode_frames(self.buffer):
            self.client._on_message(message)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._on_connection_lost()



class EngineProcess:
    """Runs one engine process, of any kind, and multiplexes requests over it.

    With ``in_process``, the engine's loop runs in a thread of this process instead, over the same messages: for
    fast tests and tools. Its steps then hold this process's GIL, and a hung step cannot be killed (the watchdog
    fails the requests and starts another thread)."""

    def __init__(self, spec: EngineSpec, *, restart: bool = True, load_timeout: float = 600,
                 step_timeout: float | None = DEFAULT_STEP_TIMEOUT, in_process: bool = False) -> None:
        self.spec = spec
        self.in_process = in_process
        self._thread: threading.Thread | None = None
        self.restart = restart
        self.load_timeout = load_timeout
        #: Requests in flight and no word from the engine for this long: it is hung, and is restarted.
        self.step_timeout = step_timeout
        self._last_message = time.monotonic()
        self._watchdog: asyncio.Task[None] | None = None
        #: How many times the watchdog killed a hung engine.
        self.hangs = 0
        #: How long requests waited in the engine before it began on them (an estimate: see the worker).
        self.queue_time = Histogram("Time requests waited in the engine before it began on them (estimated)",
                                    QUEUE_BUCKETS)
        self.info: EngineInfo | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._transport: asyncio.Transport | None = None
        self._requests: dict[int, RequestSink] = {}
        self._next_id = 0
        self._ready = False
        self._loading: asyncio.Future[EngineInfo] | None = None
        self._stopping = False
        self._restart_task: asyncio.Task[None] | None = None
        #: How many times the engine process has been (re)started.
        self.starts = 0
        #: Requests the engine process itself is working on (it reports after each step).
        self.engine_running = 0
        #: The kind's own gauges, as the engine last reported them.
        self.engine_stats: dict[str, float] = {}
        #: Engine steps run by this client's engine processes, the current one and those before it (requests
        #: batched together share steps), and those of them that scheduled no request.
        self.engine_steps = 0
        self.engine_idle_steps = 0
        #: The same counts as the current engine process last reported them (they start at 0 in each process).
        self._process_steps = (0, 0)
        #: Request handles the engine process holds, aborted ones it has not let go of yet included.
        self.engine_handles = 0

    # --- lifecycle ----------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def in_flight(self) -> int:
        return len(self._requests)

    def metrics(self) -> dict[str, float]:
        """Gauges for /metrics."""
        return {
            "engine_ready": float(self._ready),
            "engine_requests_running": float(self.engine_running),
            "engine_requests_waiting_for_tokens": float(len(self._requests)),
            "engine_starts": float(self.starts),
            "engine_hangs": float(self.hangs),
            "engine_steps": float(self.engine_steps),
            "engine_idle_steps": float(self.engine_idle_steps),
            "engine_handles": float(self.engine_handles) if self._ready else 0.0,
        }

    async def start(self) -> EngineInfo:
        """Start the engine process and wait until its model is loaded; raise :class:`EngineError` if
        it cannot load (the message is the engine's own: missing file, unknown device, ...)."""
        loop = asyncio.get_running_loop()
        parent, child = socket.socketpair()
        self._loading = loop.create_future()
        if self.in_process:
            self._thread = threading.Thread(target=serve_in_thread, args=(child,), daemon=True,
                                            name=f"engine-{self.spec.name}")
            self._thread.start()
        else:
            try:
                self._process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "ovserve.engine.worker", str(child.fileno()), str(os.getpid()),
                    pass_fds=(child.fileno(),))
            finally:
                child.close()
        self.starts += 1
        transport, _ = await loop.create_connection(lambda: _EngineProtocol(self), sock=parent)
        self._transport = transport  # type: ignore[assignment]
        transport.write(encode_frame(Hello(PROTOCOL_VERSION, self.spec)))
        try:
            info = await asyncio.wait_for(asyncio.shield(self._loading), self.load_timeout)
        except asyncio.TimeoutError:  # not the builtin TimeoutError on Python 3.10
            await self._kill()
            raise EngineError(f"the engine did not load the model within {self.load_timeout:.0f} s") from None
        except EngineError:
            await self._kill()
            raise
        self.info = info
        self._ready = True
        if self.step_timeout and self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().create_task(self._watch_steps())
        log.info("engine ready: %s on %s (pid %d, loaded in %.1f s)", self.spec.name,
                 info.device, info.pid, info.load_seconds)
        return info

    async def stop(self) -> None:
        """Stop the engine process; requests still in flight end with an error."""
        self._stopping = True
        self._ready = False
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._restart_task is not None:
            self._restart_task.cancel()
        await self._kill()
        self._fail_all(ServerShuttingDownError("the server is shutting down and could not finish this request; retry"))

    async def _kill(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.write(encode_frame(Stop()))  # the engine releases its requests, then exits
            transport.close()
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join, 5)
        process = self._process
        if process is None or process.returncode is not None:
            return
        try:
            await asyncio.wait_for(process.wait(), 5)
        except asyncio.TimeoutError:  # not the builtin TimeoutError on Python 3.10
            process.kill()
            await process.wait()

    # --- requests -----------------------------------------------------------------------------------

    def _new_id(self) -> int:
        """The id of the next request; refuses at once when the engine cannot take it (not ready, or, for kinds with
        a bound, holding as many as it may)."""
        if not self._ready or self._transport is None:
            raise ModelNotReadyError("the model's engine is not ready (starting or restarting); retry shortly")
        limit = self.spec.max_in_flight
        if limit is not None and len(self._requests) >= limit:
            raise EngineBusyError(self.spec.name, limit)
        self._next_id += 1
        return self._next_id

    def _submit(self, request_id: int, job: Any, sink: RequestSink) -> None:
        """Send a job; the engine's news about it goes to ``sink``."""
        assert self._transport is not None
        if not self._requests:
            self._last_message = time.monotonic()  # an idle engine owes no word until it has work
        self._requests[request_id] = sink
        self._transport.write(encode_frame(Submit(request_id, job)))

    def _abort(self, request_id: int) -> None:
        sink = self._requests.pop(request_id, None)
        if sink is not None:
            sink._push((), FINISH_ABORT)
            if self._transport is not None:
                self._transport.write(encode_frame(Abort(request_id)))

    # --- messages from the engine -------------------------------------------------------------------

    def _on_message(self, message: Ready | LoadFailed | Step) -> None:
        self._last_message = time.monotonic()
        if isinstance(message, Step):
            self._on_step(message)
        elif self._loading is not None and not self._loading.done():
            if isinstance(message, Ready):
                self._loading.set_result(message.info)
            elif isinstance(message, LoadFailed):
                self._loading.set_exception(EngineError(message.reason))
            else:
                self._loading.set_exception(EngineError(f"the engine answered with {type(message).__name__}, which "
                                                        f"this server does not read (another ovserve install?)"))

    def _on_step(self, step: Step) -> None:
        self.engine_running, self.engine_handles, self.engine_stats = step.running, step.held, step.stats
        self._count_steps(step.steps, step.idle_steps)
        for waited in step.queued:
            self.queue_time.observe(waited)
        requests = self._requests
        for request_id, payload, finish in step.outputs:
            request = requests.get(request_id)
            if request is None:
                continue  # aborted meanwhile
            if finish is not None:
                del requests[request_id]
            request._push(payload, finish)

    def _count_steps(self, steps: int, idle_steps: int) -> None:
        """Add what the engine process stepped since its last report to the counters."""
        before_steps, before_idle = self._process_steps
        self.engine_steps += steps - before_steps
        self.engine_idle_steps += idle_steps - before_idle
        self._process_steps = (steps, idle_steps)

    def _on_connection_lost(self) -> None:
        was_ready = self._ready
        self._ready = False
        self.engine_running = 0
        self.engine_handles = 0
        self._process_steps = (0, 0)
        self._transport = None
        code = self._process.returncode if self._process is not None else None
        if self._loading is not None and not self._loading.done():
            self._loading.set_exception(EngineError(
                f"the engine process stopped while loading the model (exit code {code})"))
        if self._stopping:
            return
        self._fail_all(ModelNotReadyError("the engine process stopped unexpectedly; the request was not completed"))
        if was_ready and self.restart:
            log.error("engine process for %s stopped unexpectedly; restarting", self.spec.name)
            self._restart_task = asyncio.get_running_loop().create_task(self._restart_loop())

    async def _watch_steps(self) -> None:
        """Kill and restart an engine that has requests and has not reported for ``step_timeout`` seconds
        (it reports after every step, and twice a second while it works): its requests fail with 503, or
        an error event when streaming, and readiness is 503 until the new engine has loaded."""
        assert self.step_timeout
        while not self._stopping:
            await asyncio.sleep(min(1.0, self.step_timeout / 4))
            silent = time.monotonic() - self._last_message
            if not (self._ready and self._requests and silent > self.step_timeout):
                continue
            self.hangs += 1
            self._ready = False
            pid = self._process.pid if self._process is not None else None
            log.error("engine process %s for %s sent nothing for %.0f s with %d requests in flight (an engine step "
                      "hangs); killing it and starting a new one", pid, self.spec.name, silent,
                      len(self._requests))
            self._fail_all(ModelNotReadyError(f"the engine stopped responding (no step finished in "
                                              f"{self.step_timeout:g} s) and is being restarted; retry shortly"))
            if self._process is not None and self._process.returncode is None:
                self._process.kill()
            self._restart_task = asyncio.get_running_loop().create_task(self._restart_loop())

    def _fail_all(self, error: Exception) -> None:
        requests, self._requests = self._requests, {}
        for request in requests.values():
            request._push((), error)

    async def _restart_loop(self) -> None:
        delay = 1.0
        while not self._stopping:
            await self._kill()
            try:
                await self.start()
                return
            except EngineError as error:
                log.error("engine restart failed: %s; trying again in %.0f s", error, delay)
            except Exception:  # never let the restart loop end silently
                log.exception("engine restart failed unexpectedly; trying again in %.0f s", delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
