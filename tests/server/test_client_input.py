"""Clients that send their bodies slowly, partly or not at all, and a store that fails under a request: each gets
an answer or one log line, and the server's counts of requests in flight come back to 0."""

import socket
import sqlite3
import time

import httpx
import pytest

from tests.conftest import MODEL_NAME, start_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def guarded(default_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("client-input")
    server = start_server(["--model", str(default_model), "--model-name", MODEL_NAME, "--body-timeout", "1",
                           "--store-path", str(tmp / "store.sqlite3"), "--embedding-model", "none"], tmp)
    server.store_path = tmp / "store.sqlite3"
    yield server
    server.stop()


def send_partly(server, body_bytes: int, declared: int) -> socket.socket:
    """A POST whose Content-Length says ``declared`` bytes, of which ``body_bytes`` are sent."""
    host, port = server.base_url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)), timeout=10)
    connection.sendall(f"POST /v3/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       f"Content-Length: {declared}\r\n\r\n".encode() + b"{" * body_bytes)
    return connection


def test_a_body_that_does_not_arrive_in_time_gets_408(guarded):
    connection = send_partly(guarded, 10, 100)
    started = time.monotonic()
    answer = connection.recv(65536).decode()
    answered = time.monotonic() - started
    head, _, body = answer.partition("\r\n\r\n")
    length = int(next(line.split(":")[1] for line in head.split("\r\n") if line.lower().startswith("content-length")))
    while len(body.encode()) < length:  # the body may come in a packet of its own
        more = connection.recv(65536).decode()
        if not more:
            break
        body += more
    connection.close()
    answer = head + "\r\n\r\n" + body
    assert 0.8 < answered < 8
    assert answer.startswith("HTTP/1.1 408") and '"code":"request_timeout"' in answer.replace(" ", "")
    assert httpx.get(f"{guarded.base_url}/v2/health/ready").status_code == 200


def test_a_client_gone_in_the_middle_of_its_body_is_one_log_line(guarded):
    lines_before = len(guarded.lines)
    for _ in range(5):
        send_partly(guarded, 10, 100).close()
    deadline = time.monotonic() + 10
    while "".join(guarded.lines[lines_before:]).count("status=499") < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    logged = "".join(guarded.lines[lines_before:])
    assert logged.count("status=499") == 5 and "went away while sending its body" in logged
    assert "Traceback" not in logged and "ClientDisconnect" not in logged
    assert guarded.metric("ovserve_requests_in_flight") == 0


def test_a_store_that_fails_under_a_request_is_a_500_and_the_request_leaves_no_count(guarded):
    with sqlite3.connect(guarded.store_path) as db:
        db.execute("drop table responses")  # the file broken under the running server
    answer = httpx.post(f"{guarded.base_url}/v3/responses", timeout=30, json={
        "model": MODEL_NAME, "input": "Hi", "previous_response_id": "resp_anything", "max_output_tokens": 2})
    assert answer.status_code == 500 and answer.json()["error"]["code"] == "internal_error"
    assert guarded.metric("ovserve_requests_in_flight") == 0
    assert httpx.post(f"{guarded.base_url}/v3/chat/completions", timeout=30, json={
        "model": MODEL_NAME, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}).status_code == 200
