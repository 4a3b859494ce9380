"""What operators read and set, on the real server: /v1/config, /metrics, CORS, JSON logs."""

import json
import time

import httpx
import pytest

from tests.conftest import MODEL_NAME, start_server

pytestmark = pytest.mark.slow


def test_v1_config_reports_each_model_as_ovms_does(server):
    status = httpx.get(f"{server.base_url}/v1/config", timeout=10).json()
    assert status == {MODEL_NAME: {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": "OK"}}]}}


def test_metrics_have_counters_and_token_latency_and_no_created_series(server):
    try:
        observed_before = server.metric("ovserve_inter_token_latency_seconds_count")
    except KeyError:  # no stream has been served yet
        observed_before = 0
    chunks = list(server.openai().chat.completions.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": "Count to five."}], max_tokens=8, stream=True,
        extra_body={"ignore_eos": True}))
    assert any(c.choices and c.choices[0].delta.content for c in chunks)
    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    assert "_created" not in text
    for counter in ("engine_starts", "engine_steps", "engine_idle_steps"):
        assert f"# TYPE ovserve_{counter}_total counter" in text and f"ovserve_{counter}_total{{" in text
    assert server.metric("ovserve_engine_steps_total") >= 8
    # the gaps between this stream's chunks were observed (several tokens may share a chunk)
    assert server.metric("ovserve_inter_token_latency_seconds_count") > observed_before
    assert server.metric("ovserve_engine_queue_time_seconds_count") >= 1  # this request, at least
    assert server.metric("ovserve_requests_in_flight") == 0
    assert server.metric("ovserve_engine_requests_running") == 0
    assert server.metric("ovserve_engine_kv_cache_usage_percent") == 0  # not the last step's figure
    assert server.metric("ovserve_engine_handles") == 0
    # idle: no step at all, let alone one that scheduled nothing (a step that lets an aborted request go may)
    steps, idle_steps = server.metric("ovserve_engine_steps_total"), server.metric("ovserve_engine_idle_steps_total")
    time.sleep(0.5)
    assert server.metric("ovserve_engine_steps_total") == steps
    assert server.metric("ovserve_engine_idle_steps_total") == idle_steps


@pytest.fixture(scope="module")
def browser_server(default_model, tmp_path_factory):
    server = start_server(["--model", str(default_model), "--model-name", MODEL_NAME, "--allowed-origins",
                           '["https://app.example"]', "--api-key", "k", "--log-format", "json"],
                          tmp_path_factory.mktemp("browser"))
    yield server
    server.stop()


def test_cors_answers_allowed_origins_only_and_preflight_needs_no_key(browser_server):
    url = f"{browser_server.base_url}/v3/chat/completions"
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    allowed = httpx.options(url, headers=preflight, timeout=10)
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "https://app.example"
    other = httpx.options(url, headers={**preflight, "Origin": "https://evil.example"}, timeout=10)
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    answer = httpx.post(url, headers={"Origin": "https://app.example", "Authorization": "Bearer k"}, timeout=60,
                        json={"model": MODEL_NAME, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == "https://app.example"


def test_json_logs_are_one_object_per_line(browser_server):
    httpx.get(f"{browser_server.base_url}/v3/models", headers={"Authorization": "Bearer k"}, timeout=10)
    entries = [json.loads(line) for line in browser_server.lines if line.startswith("{")]
    assert entries and all({"time", "level", "logger", "message"} <= entry.keys() for entry in entries)
    assert any(entry["logger"] == "ovserve.engine" and "engine ready" in entry["message"] for entry in entries)
    assert not [line for line in browser_server.lines if line.strip() and not line.startswith(("{", "ovserve ready"))]
