"""If the engine process dies or hangs, requests in flight get an error, the model reports not ready, and the
engine comes back."""

import json
import os
import re
import signal
import time

import httpx
import pytest

from tests.conftest import MODEL_NAME, start_server

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
        steps_before = server.metric("ovserve_engine_steps_total")
        assert steps_before > 0
        os.kill(engine_pid, signal.SIGKILL)
        rest = [line for line in lines if line]
    assert any('"error"' in line and "engine process stopped" in line for line in rest), rest[-3:]
    assert rest[-1] == "data: [DONE]"
    # the log says what the client got (a 200 and its chunks) and what ended it
    def cut_lines() -> list[str]:  # logged just after the last byte went out
        return [line for line in server.lines if "model=victim status=200" in line and "ended_with=503" in line]

    deadline = time.monotonic() + 10
    while not cut_lines() and time.monotonic() < deadline:
        time.sleep(0.05)
    (logged,) = cut_lines()
    assert int(re.search(r"chunks=(\d+)", logged).group(1)) >= 1 and "engine process stopped" in logged

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
    assert server.metric("ovserve_engine_starts_total") == 2
    assert server.metric("ovserve_engine_steps_total") >= steps_before  # a counter: the new engine adds to it
    response = httpx.post(f"{server.base_url}/v3/chat/completions", timeout=60, json={
        "model": "victim", "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "temperature": 0})
    assert response.status_code == 200 and "Paris" in response.json()["choices"][0]["message"]["content"]


def test_a_hung_engine_is_killed_its_stream_ends_with_an_error_and_a_new_engine_serves(default_model, tmp_path):
    server = start_server(["--model", str(default_model), "--model-name", MODEL_NAME, "--engine-step-timeout", "3"],
                          tmp_path)
    try:
        (engine,) = server.engine_pids()
        body = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": 500,
                "stream": True, "ignore_eos": True}
        with httpx.stream("POST", f"{server.base_url}/v3/chat/completions", json=body, timeout=60) as stream:
            lines = stream.iter_lines()
            next(lines)
            os.kill(engine, signal.SIGSTOP)  # an engine step that never returns
            hung_at = time.monotonic()
            rest = [line for line in lines if line]
        assert time.monotonic() - hung_at < 15
        assert rest[-1] == "data: [DONE]" and "stopped responding" in rest[-2], rest[-3:]
        assert json.loads(rest[-2].removeprefix("data: "))["error"]["code"] == "model_not_ready"
        deadline = time.monotonic() + 60
        while httpx.get(f"{server.base_url}/v2/health/ready", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "the engine was not restarted"
            time.sleep(0.2)
        (new_engine,) = server.engine_pids()
        assert new_engine != engine
        assert server.openai().chat.completions.create(
            model=MODEL_NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=3).choices[0].message.content
        assert server.metric("ovserve_engine_hangs_total") == 1
        assert "sent nothing for" in "".join(server.lines)
    finally:
        server.stop()


def test_a_responses_stream_cut_by_a_hung_engine_ends_with_response_failed(default_model, tmp_path):
    server = start_server(["--model", str(default_model), "--model-name", MODEL_NAME, "--engine-step-timeout", "3"],
                          tmp_path)
    try:
        (engine,) = server.engine_pids()
        body = {"model": MODEL_NAME, "input": "Tell me a long story about dragons and knights.", "stream": True,
                "max_output_tokens": 500, "temperature": 0}
        events = []
        with httpx.stream("POST", f"{server.base_url}/v3/responses", json=body, timeout=60) as stream:
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    if events[-1]["type"] == "response.output_text.delta" and len(events) == 5:
                        os.kill(engine, signal.SIGSTOP)  # an engine step that never returns
        kinds = [event["type"] for event in events]
        assert kinds[0] == "response.created" and kinds[-1] == "response.failed", kinds[-3:]
        assert [event["sequence_number"] for event in events] == list(range(len(events)))
        failed = events[-1]["response"]
        assert failed["id"] == events[0]["response"]["id"] and failed["status"] == "failed"
        assert failed["error"]["code"] == "model_not_ready" and "stopped responding" in failed["error"]["message"]
    finally:
        server.stop()


def test_a_stream_waiting_on_a_paused_engine_is_kept_alive_with_comments(default_model, tmp_path):
    server = start_server(["--model", str(default_model), "--model-name", MODEL_NAME, "--sse-keepalive", "0.5"],
                          tmp_path)
    try:
        (engine,) = server.engine_pids()
        os.kill(engine, signal.SIGSTOP)  # the request waits, as it would behind a long queue or prefill
        try:
            body = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5,
                    "stream": True}
            with httpx.stream("POST", f"{server.base_url}/v3/chat/completions", json=body, timeout=60) as stream:
                assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
                lines = stream.iter_lines()
                assert next(lines) == ": keep-alive"
                os.kill(engine, signal.SIGCONT)
                rest = [line for line in lines if line]
        finally:
            os.kill(engine, signal.SIGCONT)
        assert rest[-1] == "data: [DONE]" and any('"content"' in line for line in rest)
        # a refusal still gets its status: the keep-alive starts only after the wait has begun
        refused = httpx.post(f"{server.base_url}/v3/chat/completions", json={**body, "max_tokens": 0}, timeout=10)
        assert refused.status_code == 400
    finally:
        server.stop()
