"""Access rules on the real server: API keys, the body cap, request ids, hostile JSON, and the port."""

import json
import socket
import subprocess
import sys
import time

import httpx
import openai
import pytest

from tests.conftest import MODEL_NAME, REPO, free_port, start_server

pytestmark = pytest.mark.slow

ASK = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 3}


@pytest.fixture(scope="module")
def locked_server(default_model, tmp_path_factory):
    key_file = tmp_path_factory.mktemp("keys") / "key.txt"
    key_file.write_text("from-a-file\n")
    server = start_server(["--model", str(default_model), "--model-name", MODEL_NAME, "--api-key", "first-key",
                           "--api_key_file", str(key_file), "--protect-metrics", "--max-request-bytes", "4096"],
                          tmp_path_factory.mktemp("locked"))
    yield server
    server.stop()


def client(server, key):
    return openai.OpenAI(base_url=f"{server.base_url}/v3", api_key=key, max_retries=0,
                         _strict_response_validation=True)


@pytest.mark.parametrize("key", ["unused", "first-key2", "first-ke"])
def test_a_wrong_or_missing_key_gets_a_401_shaped_like_openai_s(locked_server, key):
    with pytest.raises(openai.AuthenticationError) as caught:
        client(locked_server, key).models.list()
    assert caught.value.status_code == 401 and caught.value.body["code"] == "invalid_api_key"
    response = httpx.post(f"{locked_server.base_url}/v1/chat/completions", json=ASK, timeout=30)  # no key at all
    assert response.status_code == 401 and response.json()["error"]["type"] == "authentication_error"
    # vLLM's tokenizer endpoints at the root are locked as the API is
    for response in (httpx.get(f"{locked_server.base_url}/tokenizer_info", timeout=30),
                     httpx.post(f"{locked_server.base_url}/tokenize", json={"prompt": "hi"}, timeout=30),
                     httpx.post(f"{locked_server.base_url}/detokenize", json={"tokens": [1]},
                                headers={"Authorization": f"Bearer {key}"}, timeout=30)):
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


def test_every_given_key_opens_the_api_and_health_stays_open(locked_server):
    assert [m.id for m in client(locked_server, "first-key").models.list()] == [MODEL_NAME]
    opened = httpx.post(f"{locked_server.base_url}/tokenize", json={"prompt": "hi"}, timeout=30,
                        headers={"Authorization": "Bearer first-key"})
    assert opened.status_code == 200 and opened.json()["tokens"]
    answer = client(locked_server, "from-a-file").chat.completions.create(**ASK)
    assert answer.choices[0].message.content
    assert httpx.get(f"{locked_server.base_url}/v2/health/ready", timeout=10).status_code == 200
    assert httpx.get(f"{locked_server.base_url}/metrics", timeout=10).status_code == 401  # --protect-metrics
    metrics = httpx.get(f"{locked_server.base_url}/metrics", headers={"Authorization": "Bearer first-key"}, timeout=10)
    assert metrics.status_code == 200 and "ovserve_requests" in metrics.text


def test_a_body_above_the_cap_gets_413_before_it_is_read(locked_server):
    headers = {"Authorization": "Bearer first-key", "content-type": "application/json"}
    big = json.dumps({**ASK, "messages": [{"role": "user", "content": "x" * 5000}]}).encode()
    response = httpx.post(f"{locked_server.base_url}/v3/chat/completions", content=big, headers=headers, timeout=30)
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"

    def chunks():  # no Content-Length: cut off once it passes the cap
        for _ in range(10):
            yield b" " * 1000
        yield big

    response = httpx.post(f"{locked_server.base_url}/v3/chat/completions", content=chunks(), headers=headers,
                          timeout=30)
    assert response.status_code == 413
    small = httpx.post(f"{locked_server.base_url}/v3/chat/completions", json=ASK, headers=headers, timeout=60)
    assert small.status_code == 200


def test_the_client_s_request_id_comes_back_and_one_is_made_otherwise(server):
    given = httpx.post(f"{server.base_url}/v3/chat/completions", json=ASK, headers={"x-request-id": "trace-42"},
                       timeout=60)
    assert given.status_code == 200 and given.headers["x-request-id"] == "trace-42"
    made = httpx.get(f"{server.base_url}/v3/models", timeout=10)
    assert made.headers["x-request-id"].startswith("req-")
    missing = httpx.post(f"{server.base_url}/v3/chat/completions", json={"model": "nope"}, timeout=10)
    assert missing.status_code == 404 and missing.headers["x-request-id"].startswith("req-")


@pytest.mark.parametrize("body", [
    '{"model": "smollm2", "messages": ' + "[" * 10000 + "]" * 10000 + "}",
    '{"model": "smollm2", "messages": [{"role": "user", "content": "x"}], "chat_template_kwargs": ' + '{"a": ' * 100 + "1"
    + "}" * 100 + "}",
    '{"model": "smollm2", "messages": [{"role": "user", "content": "bad \\ud800 text"}], "max_tokens": 2}',
])
def test_hostile_json_gets_a_400_and_the_server_keeps_serving(server, body):
    response = httpx.post(f"{server.base_url}/v3/chat/completions", content=body,
                          headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert server.openai().chat.completions.create(**ASK).choices[0].message.content


def test_a_port_in_use_fails_at_once_before_any_model_loads(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "ovserve.cli", "serve", "--port", str(port)],
                                capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode != 0 and time.monotonic() - started < 20
    assert result.stderr.strip().splitlines() == [f"error: cannot listen on 127.0.0.1:{port}: Address already in use"]
    assert "loading" not in result.stdout + result.stderr
    bad_host = subprocess.run([sys.executable, "-m", "ovserve.cli", "serve", "--host", "no-such-host.invalid",
                               "--port", str(free_port())], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert bad_host.returncode != 0 and "cannot listen on no-such-host.invalid" in bad_host.stderr
    assert len(bad_host.stderr.strip().splitlines()) == 1


def test_requests_above_the_concurrency_limit_get_429_at_once_with_retry_after(default_model, tmp_path_factory):
    server = start_server(["--model", str(default_model), "--model-name", MODEL_NAME,
                           "--max-concurrent-requests", "1"], tmp_path_factory.mktemp("admission"))
    try:
        long = {**ASK, "max_tokens": 200, "stream": True, "ignore_eos": True}
        with httpx.stream("POST", f"{server.base_url}/v3/chat/completions", json=long, timeout=120) as streaming:
            assert streaming.status_code == 200
            lines = streaming.iter_lines()  # kept: a dropped iterator closes the stream
            next(lines)  # the first request is being served
            started = time.monotonic()
            refused = httpx.post(f"{server.base_url}/v3/chat/completions", json=ASK, timeout=30)
            assert time.monotonic() - started < 2
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["type"] == "rate_limit_error"
        assert server.metric("ovserve_requests_rejected_total") == 1
        assert wait_for_200(server)  # the slot is free again once the stream ended
    finally:
        server.stop()


def wait_for_200(server) -> bool:
    for _ in range(50):
        if httpx.post(f"{server.base_url}/v3/chat/completions", json=ASK, timeout=60).status_code == 200:
            return True
        time.sleep(0.1)
    return False


def test_a_request_past_the_request_timeout_ends_with_504_or_an_error_event(default_model, tmp_path_factory):
    # 2,000 tokens take far longer than 4 s; a stream's first token comes far sooner, even on a loaded machine
    server = start_server(["--model", str(default_model), "--model-name", MODEL_NAME, "--request-timeout", "4"],
                          tmp_path_factory.mktemp("deadline"))
    try:
        long = {**ASK, "max_tokens": 2000, "ignore_eos": True}
        started = time.monotonic()
        unary = httpx.post(f"{server.base_url}/v3/chat/completions", json=long, timeout=60)
        assert unary.status_code == 504 and unary.json()["error"]["code"] == "request_timeout"
        assert time.monotonic() - started < 15
        with httpx.stream("POST", f"{server.base_url}/v3/chat/completions", json={**long, "stream": True},
                          timeout=60) as stream:
            lines = [line for line in stream.iter_lines() if line]
            status = stream.status_code
        if status == 504:  # the deadline passed before the first token: a plain 504, as for unary
            assert '"request_timeout"' in lines[-1]
        else:  # the stream had begun: the error goes in-band, then [DONE]
            assert lines[0].startswith("data: ") and lines[-1] == "data: [DONE]" and '"request_timeout"' in lines[-2]
        assert server.openai().chat.completions.create(**ASK).choices[0].message.content  # short ones still pass
        assert server.metric("ovserve_engine_requests_waiting_for_tokens") == 0  # the engine stopped on them
    finally:
        server.stop()
