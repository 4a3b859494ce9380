"""Start, wait for and stop the servers under test, on 127.0.0.1 only.

Three servers serve the same .gguf file:

* ``llama-server`` (llama.cpp's C++ server). Found via ``--llama-server-bin`` /
  ``$OVSERVE_BENCH_LLAMA_SERVER``, else in the cache; if missing it is built from the llama.cpp
  sources vendored in the llama-cpp-python sdist (``pip download``, then cmake, a few minutes).
* llama-cpp-python's OpenAI server. Its python is found via ``--llama-cpp-python`` /
  ``$OVSERVE_BENCH_LLAMA_CPP_PYTHON``, else a venv in the cache that is created on first use
  (``pip install 'llama-cpp-python[server]'`` compiles for a few minutes).
* ``ovserve serve``.

The cache lives outside the repo: ``$OVSERVE_BENCH_CACHE`` or ``~/.cache/ovserve-bench``.
Every server runs as a subprocess in its own session with its output in a log file, and
:func:`running` always stops it (SIGTERM, then SIGKILL, for its whole process group).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.workload import MODEL_NAME

HOST = "127.0.0.1"
CACHE_ENV = "OVSERVE_BENCH_CACHE"
LLAMA_SERVER_ENV = "OVSERVE_BENCH_LLAMA_SERVER"
LLAMA_CPP_PYTHON_ENV = "OVSERVE_BENCH_LLAMA_CPP_PYTHON"
#: The llama-cpp-python release whose sdist (and vendored llama.cpp) the cache builds from.
LLAMA_CPP_PYTHON_VERSION = os.environ.get("OVSERVE_BENCH_LLAMA_CPP_PYTHON_VERSION", "0.3.36")
#: Context per llama-server slot: the prompt (< 100 tokens) plus 128 output tokens fit easily.
CTX_PER_SLOT = 4096
BUILD_TIMEOUT_S = 3600.0
THREADS = 2


class PeerError(RuntimeError):
    """A server could not be found, built, started or made ready."""


@dataclass
class ServerSpec:
    """How to start one server and how to know it is ready.

    Attributes:
        name: a short label used in messages and the log file name.
        argv: the command line.
        base_url: the OpenAI base URL clients should use.
        ready_url: polled with GET until it answers 200.
        log_path: where stdout and stderr go.
        ready_timeout_s: how long to wait for readiness.
        env: extra environment variables.
    """

    name: str
    argv: list[str]
    base_url: str
    ready_url: str
    log_path: Path
    ready_timeout_s: float = 180.0
    env: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- running servers


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _http_ok(url: str, timeout_s: float = 2.0) -> bool:
    """True if GET ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file (empty if it cannot be read)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def last_log_line(path: Path) -> str:
    """The last non-empty line a server wrote (its command line, written first, excluded)."""
    lines = [line for line in log_tail(path, 50).splitlines() if line.strip() and not line.startswith("$ ")]
    return lines[-1].strip() if lines else "no output"


def wait_ready(proc: subprocess.Popen, spec: ServerSpec, poll_s: float = 0.5) -> float:
    """Poll ``spec.ready_url`` until 200; raise PeerError on exit or timeout. Returns seconds waited."""
    started = time.monotonic()
    max_polls = int(spec.ready_timeout_s / poll_s) + 1
    for _ in range(max_polls):
        if proc.poll() is not None:
            raise PeerError(
                f"{spec.name} exited with code {proc.returncode} before it was ready: "
                f"{last_log_line(spec.log_path)} (log {spec.log_path})\n{log_tail(spec.log_path)}"
            )
        if _http_ok(spec.ready_url):
            return time.monotonic() - started
        if time.monotonic() - started > spec.ready_timeout_s:
            break
        time.sleep(poll_s)
    raise PeerError(
        f"{spec.name} not ready after {spec.ready_timeout_s:.0f}s ({spec.ready_url}): "
        f"{last_log_line(spec.log_path)} (log {spec.log_path})\n{log_tail(spec.log_path)}"
    )


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the process group we created; False if the group is gone."""
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def stop(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    """Stop a server we started: SIGTERM, wait, then SIGKILL; also any children left in its group."""
    pgid = proc.pid  # start_new_session=True made the server the leader of its own group
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace_s)
    if _signal_group(pgid, 0):  # children (e.g. an engine process) outlived the leader
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and _signal_group(pgid, 0):
            time.sleep(0.1)
        _signal_group(pgid, signal.SIGKILL)


@dataclass(frozen=True)
class RunningServer:
    """A started server: its spec, its process id and how long it took to become ready."""

    spec: ServerSpec
    pid: int
    ready_s: float

    def rss_mib(self) -> float:
        """Resident memory of the server and every process it started (e.g. an engine process), MiB."""
        return sum(status_kib(pid) for pid in process_tree(self.pid)) / 1024


def process_tree(pid: int) -> list[int]:
    """A process and all its descendants (those gone meanwhile left out)."""
    pids, pending = [], [pid]
    while pending:
        current = pending.pop()
        pids.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        pending.extend(int(child) for child in children)
    return pids


def status_kib(pid: int, field: str = "VmRSS") -> int:
    """One ``kB`` field of ``/proc/PID/status`` (0 if unreadable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


#: What an ovserve engine process has on its command line.
ENGINE_MARK = b"ovserve.engine.worker"


def is_engine(pid: int) -> bool:
    """True if the process is an ovserve engine worker."""
    try:
        return ENGINE_MARK in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def ovserve_memory(server_pid: int) -> dict[str, float | None]:
    """Resident memory (MiB) of ``ovserve serve``'s own process, its engine processes (now and at their peak),
    and its whole process tree."""
    tree = process_tree(server_pid)
    engines = [pid for pid in tree if is_engine(pid)]
    engine_rss = sum(status_kib(pid) for pid in engines) if engines else None
    engine_peak = sum(status_kib(pid, "VmHWM") for pid in engines) if engines else None
    return {
        "server_rss_mib": round(status_kib(server_pid) / 1024, 1),
        "engine_rss_mib": None if engine_rss is None else round(engine_rss / 1024, 1),
        "engine_peak_rss_mib": None if engine_peak is None else round(engine_peak / 1024, 1),
        "tree_rss_mib": round(sum(status_kib(pid) for pid in tree) / 1024, 1),
        "engines": len(engines),
    }


@contextlib.contextmanager
def running(spec: ServerSpec) -> Iterator[RunningServer]:
    """Start the server, wait until it is ready, yield it, and always stop it."""
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **spec.env}
    with spec.log_path.open("wb") as log:
        log.write(("$ " + " ".join(spec.argv) + "\n").encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                spec.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise PeerError(f"cannot start {spec.name} ({spec.argv[0]}): {exc}") from exc
        try:
            waited = wait_ready(proc, spec, poll_s=0.1)
            print(f"[peers] {spec.name} ready in {waited:.1f}s at {spec.base_url} (log {spec.log_path})")
            yield RunningServer(spec, proc.pid, waited)
        finally:
            stop(proc)


# --------------------------------------------------------------------------- cache and builds


def cache_dir() -> Path:
    """The download/build cache (outside the repo)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ovserve-bench").expanduser()


def _run_logged(argv: list[str], log_path: Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    """Run a build step with its output appended to ``log_path``; raise PeerError on failure."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"[peers] $ {' '.join(argv)}  (log {log_path})")
    with log_path.open("ab") as log:
        try:
            result = subprocess.run(
                argv,
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                timeout=BUILD_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PeerError(f"build step failed: {' '.join(argv)}: {exc}") from exc
    if result.returncode != 0:
        raise PeerError(f"build step exited {result.returncode}: {' '.join(argv)}\n{log_tail(log_path)}")


def download_sdist(cache: Path) -> Path:
    """Download (once) the llama-cpp-python sdist into ``cache/sdist`` and return its path."""
    sdist_dir = cache / "sdist"
    pattern = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"
    existing = sorted(sdist_dir.glob(pattern))
    if existing:
        return existing[0]
    _run_logged(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}",
            "-d",
            str(sdist_dir),
        ],
        cache / "logs" / "pip-download.log",
    )
    found = sorted(sdist_dir.glob(pattern))
    if not found:
        raise PeerError(f"pip download did not produce {sdist_dir / pattern}")
    return found[0]


def _unpack(sdist: Path, dest: Path) -> Path:
    """Unpack the sdist under ``dest`` once; return the vendored llama.cpp source folder."""
    root = dest / sdist.name.removesuffix(".tar.gz")
    if not root.is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(sdist) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, filter="data")
            else:  # Python without extraction filters (< 3.10.12)
                tar.extractall(dest)
    source = root / "vendor" / "llama.cpp"
    if not (source / "CMakeLists.txt").is_file():
        raise PeerError(f"no llama.cpp sources in {source}")
    return source


def build_llama_server(cache: Path) -> Path:
    """Build llama-server from the llama.cpp vendored in the llama-cpp-python sdist."""
    source = _unpack(download_sdist(cache), cache / "src")
    log = cache / "logs" / "llama-server-build.log"
    _run_logged(
        [
            "cmake",
            "-B",
            "build",
            "-DGGML_NATIVE=ON",
            "-DLLAMA_CURL=OFF",
            "-DLLAMA_BUILD_SERVER=ON",
            "-DCMAKE_BUILD_TYPE=Release",
        ],
        log,
        cwd=source,
    )
    _run_logged(["cmake", "--build", "build", "--target", "llama-server", "-j2"], log, cwd=source)
    binary = source / "build" / "bin" / "llama-server"
    if not binary.is_file():
        raise PeerError(f"build finished but {binary} is missing")
    return binary


def _cached_llama_server(cache: Path) -> Path | None:
    """A llama-server already built in the cache, if any."""
    found = sorted((cache / "src").glob("llama_cpp_python-*/vendor/llama.cpp/build/bin/llama-server"))
    return found[-1] if found else None


def resolve_llama_server(explicit: str | None, build: bool = True) -> Path:
    """Find the llama-server binary (flag, env, cache, PATH), building it if allowed."""
    for candidate in (explicit, os.environ.get(LLAMA_SERVER_ENV)):
        if candidate:
            path = Path(candidate).expanduser()
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise PeerError(f"llama-server binary {path} does not exist or is not executable")
            return path
    cached = _cached_llama_server(cache_dir())
    if cached:
        return cached
    on_path = shutil.which("llama-server")
    if on_path:
        return Path(on_path)
    if not build:
        raise PeerError(f"no llama-server binary; pass --llama-server-bin or set {LLAMA_SERVER_ENV}")
    print("[peers] llama-server not found: building it (a few minutes)")
    return build_llama_server(cache_dir())


def install_llama_cpp_python(cache: Path) -> Path:
    """Create ``cache/llama-cpp-python-venv`` with llama-cpp-python[server]; return its python."""
    venv = cache / "llama-cpp-python-venv"
    python = venv / "bin" / "python"
    log = cache / "logs" / "llama-cpp-python-install.log"
    if not python.is_file():
        _run_logged([sys.executable, "-m", "venv", str(venv)], log)
    sdists = sorted((cache / "sdist").glob(f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"))
    requirement = f"{sdists[0]}[server]" if sdists else f"llama-cpp-python[server]=={LLAMA_CPP_PYTHON_VERSION}"
    print("[peers] installing llama-cpp-python[server] (compiles llama.cpp, a few minutes)")
    _run_logged(
        [str(python), "-m", "pip", "install", requirement],
        log,
        env={"CMAKE_ARGS": "-DGGML_NATIVE=ON", "CMAKE_BUILD_PARALLEL_LEVEL": "2"},
    )
    return python


def _has_llama_cpp_server(python: Path) -> bool:
    """True if ``python`` can import llama_cpp.server."""
    try:
        result = subprocess.run(
            [str(python), "-c", "import llama_cpp.server.app"], capture_output=True, timeout=120, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def resolve_llama_cpp_python(explicit: str | None, install: bool = True) -> Path:
    """Find a python that has llama-cpp-python[server] (flag, env, cache venv), installing if allowed."""
    for candidate in (explicit, os.environ.get(LLAMA_CPP_PYTHON_ENV)):
        if candidate:
            path = Path(candidate).expanduser()
            if not _has_llama_cpp_server(path):
                raise PeerError(f"{path} cannot import llama_cpp.server (pip install 'llama-cpp-python[server]')")
            return path
    python = cache_dir() / "llama-cpp-python-venv" / "bin" / "python"
    if python.is_file() and _has_llama_cpp_server(python):
        return python
    if not install:
        raise PeerError(f"no llama-cpp-python server; pass --llama-cpp-python or set {LLAMA_CPP_PYTHON_ENV}")
    python = install_llama_cpp_python(cache_dir())
    if not _has_llama_cpp_server(python):
        raise PeerError(f"installed llama-cpp-python but {python} cannot import llama_cpp.server")
    return python


def tool_version(argv: list[str]) -> str:
    """First line of a tool's version output, or '' if it cannot be run."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = (result.stdout + result.stderr).strip()
    return " | ".join(line for line in text.splitlines() if "version" in line.lower())[:200] or text[:200]


# --------------------------------------------------------------------------- server specs


def llama_server_slots(concurrency: int) -> int:
    """Slots for llama-server at a concurrency level: 16 up to 16 streams, else 64 (or more)."""
    if concurrency <= 16:
        return 16
    return max(64, concurrency)


def llama_server_spec(binary: Path, model: Path, slots: int, log_dir: Path,
                      ctx_per_slot: int = CTX_PER_SLOT) -> ServerSpec:
    """llama-server with ``slots`` parallel slots of ``ctx_per_slot`` tokens each, 2 threads."""
    port = free_port()
    base = f"http://{HOST}:{port}"
    argv = [
        str(binary),
        "-m",
        str(model),
        "-np",
        str(slots),
        "-c",
        str(slots * ctx_per_slot),
        "-t",
        str(THREADS),
        "--host",
        HOST,
        "--port",
        str(port),
        "--alias",
        MODEL_NAME,
        "--no-webui",
    ]
    return ServerSpec(
        name=f"llama-server-np{slots}",
        argv=argv,
        base_url=f"{base}/v1",
        ready_url=f"{base}/health",
        log_path=log_dir / f"llama-server-np{slots}.log",
    )


def llama_cpp_python_spec(python: Path, model: Path, log_dir: Path, n_ctx: int = CTX_PER_SLOT) -> ServerSpec:
    """llama-cpp-python's OpenAI server (one request at a time), 2 threads."""
    port = free_port()
    base = f"http://{HOST}:{port}"
    argv = [
        str(python),
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        MODEL_NAME,
        "--host",
        HOST,
        "--port",
        str(port),
        "--interrupt_requests",
        "False",
        "--n_threads",
        str(THREADS),
        "--n_threads_batch",
        str(THREADS),
        "--n_ctx",
        str(n_ctx),
        "--verbose",
        "False",
    ]
    return ServerSpec(
        name="llama-cpp-python",
        argv=argv,
        base_url=f"{base}/v1",
        ready_url=f"{base}/v1/models",
        log_path=log_dir / "llama-cpp-python.log",
    )


def resolve_ovserve(executable: str) -> Path:
    """Find the ovserve executable: a path, a name on PATH, or a name next to this python (its venv)."""
    found = shutil.which(executable)
    beside = Path(sys.executable).parent / executable
    if not found and os.sep not in executable and beside.is_file() and os.access(beside, os.X_OK):
        found = str(beside)
    if not found:
        raise PeerError(f"ovserve executable {executable!r} not found (install the repo, or pass --ovserve-bin)")
    return Path(found)


def ovserve_spec(executable: Path, model: Path, log_dir: Path, name: str = "ovserve",
                 extra_args: tuple[str, ...] = ()) -> ServerSpec:
    """``ovserve serve`` (plus ``extra_args``) for the model under MODEL_NAME; ready when GET /v3/models is 200."""
    port = free_port()
    base = f"http://{HOST}:{port}/v3"
    argv = [
        str(executable),
        "serve",
        "--model",
        str(model),
        "--model-name",
        MODEL_NAME,
        "--host",
        HOST,
        "--port",
        str(port),
        *extra_args,
    ]
    return ServerSpec(
        name=name,
        argv=argv,
        base_url=base,
        ready_url=f"{base}/models",
        log_path=log_dir / f"{name}.log",
        ready_timeout_s=300.0,
    )
