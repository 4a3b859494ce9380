"""The engine process: loads one model of any kind and serves it until the server goes.

Started by :class:`~ovserve.engine.client.EngineProcess` as ``python -m ovserve.engine.worker FD PID``, where FD is
its end of a socket pair and PID the server's; the messages on it are those of :mod:`ovserve.engine.messages`, the
first a :class:`~ovserve.engine.messages.Hello` with the protocol version and the
:class:`~ovserve.engine.kinds.EngineSpec` to load. The spec loads an :class:`~ovserve.engine.kinds.EngineCore`,
and :class:`EngineLoop` serves it: between
rounds of work (engine steps, for the LLM) it reads new jobs and aborts from the socket, and after each round it sends
one message with every request's news. A model's work runs here, in a process of its own, never beside the HTTP
event loop: an LLM step holds the GIL for all of it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import socket
import sys
import time

from ovserve.engine.kinds import EngineCore, EngineSpec
from ovserve.engine.messages import (
    PROTOCOL_VERSION,
    Abort,
    Hello,
    LoadFailed,
    Ready,
    Step,
    Stop,
    Submit,
    version_mismatch,
)
from ovserve.engine.protocol import EngineInfo, decode_frames, encode_frame

#: While it works, the step loop reports at least this often, even steps that finish no token (prefill), so
#: that the server's watchdog can tell a long run of steps from a step that hangs.
HEARTBEAT_SECONDS = 0.5

#: How long the step loop waits, after requests finish, for the next requests of their clients
#: (``$OVSERVE_REPLACEMENT_WAIT_MS`` sets it, for measuring what it buys: benchmarks/README.md).
REPLACEMENT_WAIT_S = float(os.environ.get("OVSERVE_REPLACEMENT_WAIT_MS", "20")) / 1000

class EngineLoop:
    """Carries messages between the server and an :class:`~ovserve.engine.kinds.EngineCore`: hands it jobs and
    aborts, has it work while it is busy, and reports its news after each round (and twice a second while it works,
    for as long as it shows progress)."""

    def __init__(self, core: EngineCore, sock: socket.socket) -> None:
        self.core = core
        self.sock = sock
        self.buffer = bytearray()
        self.stopping = False
        #: The (running, held) request counts last reported.
        self.reported = (0, 0)
        self.last_report = time.monotonic()

    def send(self, message: Ready | Step) -> None:
        self.sock.sendall(encode_frame(message))

    def receive(self, timeout: float | None) -> bool:
        """Apply the commands that arrive within ``timeout`` seconds (``None``: wait for some, ``0``:
        only those already here); a core's news (its :attr:`~EngineCore.wake_fd`) ends the wait too. False when the
        other end has gone."""
        wake = self.core.wake_fd
        watched = [self.sock] if wake is None else [self.sock, wake]
        while True:
            readable, _, _ = select.select(watched, [], [], timeout)
            if self.sock not in readable:
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
        target = self.core.added + finished
        while self.core.added < target:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            if not self.receive(remaining):
                return False
        return True

    def apply(self, message: Submit | Abort | Stop) -> None:
        if isinstance(message, Submit):
            self.core.add(message.request_id, message.job)
        elif isinstance(message, Abort):
            self.core.abort(message.request_id)
        elif isinstance(message, Stop):
            self.stopping = True
        else:
            raise TypeError(f"the engine cannot take a {type(message).__name__} message")

    def run(self) -> None:
        """Work while there is work; wait for commands when there is none. Ends when the server goes away or asks
        to stop (after the core has released every request), or when the core has failed."""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the server went away: nothing to report
            self._run()
        if self.core.failed is None:
            self.core.stop()

    def _run(self) -> None:
        core = self.core
        while not self.stopping:
            if core.failed is not None:
                print(f"ovserve engine: a step failed ({core.failed}); the pipeline cannot go on, so this "
                      f"process exits and the server starts a new one", file=sys.stderr, flush=True)
                return
            busy = core.busy
            steps_now = busy and core.wake_fd is None
            timeout = 0 if steps_now or core.outputs else (HEARTBEAT_SECONDS if busy else None)
            if not self.receive(timeout):
                return
            if self.stopping:
                return
            completed_before = core.completed
            if core.busy:
                core.work()
            self.report(busy)
            if (core.waits_for_replacements and core.held and core.completed > completed_before
                    and not self.wait_for_replacements(core.completed - completed_before)):
                return

    def report(self, busy: bool) -> None:
        """Send the core's news, or a heartbeat while it works and shows progress."""
        core = self.core
        running, held = core.live, core.held
        heartbeat = busy and core.progressing and time.monotonic() - self.last_report > HEARTBEAT_SECONDS
        if core.outputs or (running, held) != self.reported or heartbeat or core.queued:
            self.send(Step(core.outputs, running, core.steps, core.queued, held, core.idle_steps, core.stats()))
            core.outputs = []
            core.queued = []
            self.reported = (running, held)
            self.last_report = time.monotonic()


def _read_hello(sock: socket.socket) -> EngineSpec:
    """The spec of the server's :class:`Hello`; a server of another protocol version is told so, and the
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
            return hello.spec


def engine_main(sock: socket.socket, spec: EngineSpec) -> None:
    """Load the model, report, then serve until the socket closes."""
    started = time.monotonic()
    try:
        core = spec.load()
    except Exception as error:  # reported to the server, which fails the model load, in one line
        reason = f"{spec.location} cannot be loaded: {type(error).__name__}: {' '.join(str(error).split())}"
        sock.sendall(encode_frame(LoadFailed(reason)))
        return
    loop = EngineLoop(core, sock)
    loop.send(Ready(EngineInfo(spec.device, time.monotonic() - started, os.getpid())))
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
