"""If the engine process dies, requests in flight get an error, the model reports not ready, and the
engine comes back."""

import os
import signal
import time

import httpx
import pytest

from tests.conftest import start_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fault_server(default_model, tmp_path_factory):
    # OVMS flag names work as aliases.
    server = start_server(["--model_path", str(default_model), "--model_name", "victim"],
                          tmp_path_factory.mktemp("fault"))
    yield server
    server.stop()


def test_engine_death_fails_in_flight_requests_then_the_engine_restarts(fault_server):
    server = fault_server
    (engine_pid,) = server.engine_pids()
    body = {"model": "victim", "messages": [{"role": "user", "content": "Tell me a long story."}],
            "stream": True, "max_tokens": 4000, "ignore_eos": True}
    with httpx.stream("POST", f"{server.base_url}/v3/chat/completions", json=body, timeout=60) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        os.kill(engine_pid, signal.SIGKILL)
        rest = [line for line in lines if line]
    assert any('"error"' in line and "engine process stopped" in line for line in rest), rest[-3:]
    assert rest[-1] == "data: [DONE]"

    not_ready = httpx.post(f"{server.base_url}/v3/chat/completions", timeout=30, json={
        "model": "victim", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3})
    assert not_ready.status_code == 503
    assert not_ready.json()["error"]["code"] == "model_not_ready"
    assert httpx.get(f"{server.base_url}/v2/health/ready").status_code == 503

    deadline = time.monotonic() + 120
    while httpx.get(f"{server.base_url}/v2/health/ready").status_code != 200:
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.2)
    assert server.engine_pids() != [engine_pid]
    assert server.metric("ovserve_engine_starts") == 2
    response = httpx.post(f"{server.base_url}/v3/chat/completions", timeout=60, json={
        "model": "victim", "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "temperature": 0})
    assert response.status_code == 200 and "Paris" in response.json()["choices"][0]["message"]["content"]
