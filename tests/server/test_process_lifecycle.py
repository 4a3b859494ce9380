"""The server's processes on the real model: Ctrl-C to the whole process group, and the server's death."""

import json
import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import MODEL_NAME, ServerProcess

pytestmark = pytest.mark.slow


def alive(pid: int) -> bool:
    """Running or stopped, not gone or a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def start(default_model, tmp_path, **kwargs) -> ServerProcess:
    server = ServerProcess(["--model", str(default_model), "--model-name", MODEL_NAME], tmp_path / "server.log",
                           **kwargs)
    server.wait_ready()
    return server


def test_ctrl_c_to_the_process_group_stops_server_and_engine_cleanly(default_model, tmp_path):
    server = start(default_model, tmp_path, new_session=True)
    (engine,) = server.engine_pids()
    os.killpg(server.process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    assert server.process.wait(60) == 0
    output = "".join(server.lines)
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert "unexpectedly" not in output and "restarting" not in output, output
    assert wait_until(lambda: not alive(engine), 10)


def test_the_engine_dies_with_the_server_even_when_stuck_in_a_step(default_model, tmp_path):
    server = start(default_model, tmp_path)
    (engine,) = server.engine_pids()
    os.kill(engine, signal.SIGSTOP)  # frozen, as a hung step would be: it reads no socket
    try:
        server.process.kill()
        server.process.wait(10)
        assert wait_until(lambda: not alive(engine), 10), "the engine outlived the server"
    finally:
        if alive(engine):
            os.kill(engine, signal.SIGKILL)


def sigterm_during_a_stream(server, max_tokens: int, while_draining=lambda: None, group: bool = False) -> list[str]:
    """SIGTERM (to the server, or its whole process group) once a story's stream has begun; the stream's
    remaining lines, and the server's exit code 0."""
    body = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "Tell me a story."}],
            "max_tokens": max_tokens, "stream": True, "ignore_eos": True, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{server.base_url}/v3/chat/completions", json=body, timeout=120) as stream:
        lines = stream.iter_lines()
        next(lines)
        if group:
            os.killpg(server.process.pid, signal.SIGTERM)  # systemd's KillMode=control-group, docker stop
        else:
            server.process.send_signal(signal.SIGTERM)
        while_draining()
        rest = [line for line in lines if line]
    assert server.process.wait(60) == 0
    assert "Traceback" not in "".join(server.lines)
    return rest


def completion_tokens(lines: list[str]) -> int:
    """The completion tokens the stream's usage chunk reports (chunks may carry several tokens each)."""
    return json.loads(lines[-2].removeprefix("data: "))["usage"]["completion_tokens"]


def ready_status(server) -> int:
    try:
        return httpx.get(f"{server.base_url}/v2/health/ready", timeout=2).status_code
    except httpx.HTTPError:
        return 0


def test_sigterm_lets_a_stream_finish_to_done_and_turns_readiness_off(default_model, tmp_path):
    server = start(default_model, tmp_path)

    def readiness_turns_off() -> None:
        assert wait_until(lambda: ready_status(server) != 200, 5)  # 503, or refused once the socket closes

    rest = sigterm_during_a_stream(server, 60, readiness_turns_off)
    assert rest[-1] == "data: [DONE]" and completion_tokens(rest) == 60  # the whole answer, not cut
    assert "status=200" in "".join(server.lines)


def test_past_the_shutdown_timeout_a_stream_ends_with_an_error_event_and_done(default_model, tmp_path):
    server = ServerProcess(["--model", str(default_model), "--model-name", MODEL_NAME, "--shutdown-timeout", "1"],
                           tmp_path / "server.log")
    server.wait_ready()
    rest = sigterm_during_a_stream(server, 2000)
    assert rest[-1] == "data: [DONE]" and '"server_shutting_down"' in rest[-2], rest[-3:]
    logged = "".join(server.lines)
    assert "error='the server is shutting down" in logged
    # the log says the client got a 200 and its chunks before the cut; the engine frees what it held before it goes
    assert re.search(r"status=200 .* ended_with=503 chunks=\d+", logged)
    assert "leaked" not in logged and "Traceback" not in logged


def test_sigterm_to_the_whole_process_group_drains_too(default_model, tmp_path):
    server = start(default_model, tmp_path, new_session=True)
    rest = sigterm_during_a_stream(server, 40, group=True)
    assert rest[-1] == "data: [DONE]" and completion_tokens(rest) == 40
    output = "".join(server.lines)
    assert "unexpectedly" not in output and "restarting" not in output, output


def test_a_second_ctrl_c_ends_a_stream_with_server_shutting_down_and_logs_no_traceback(default_model, tmp_path):
    server = start(default_model, tmp_path)
    body = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": 4000,
            "stream": True, "ignore_eos": True}
    with httpx.stream("POST", f"{server.base_url}/v3/chat/completions", json=body, timeout=120) as stream:
        lines = stream.iter_lines()
        next(lines)
        server.process.send_signal(signal.SIGINT)
        time.sleep(0.5)
        server.process.send_signal(signal.SIGINT)  # no more waiting: exit at once
        rest = [line for line in lines if line]
    assert server.process.wait(60) == 0
    error = json.loads(rest[-2].removeprefix("data: "))["error"]
    assert rest[-1] == "data: [DONE]" and error["code"] == "server_shutting_down", rest[-3:]
    output = "".join(server.lines)
    assert "Traceback" not in output and "Exception in ASGI" not in output and "leaked" not in output, output[-3000:]
