"""A client that goes away mid-stream stops its generation in the engine."""


import httpx
import pytest

from tests.conftest import MODEL_NAME
from tests.server.streams import wait_for

pytestmark = pytest.mark.slow


def test_a_client_disconnecting_mid_stream_aborts_its_generation(server):
    body = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "Tell me a long story."}],
            "stream": True, "max_tokens": 4000, "ignore_eos": True}
    with httpx.stream("POST", f"{server.base_url}/v3/chat/completions", json=body, timeout=60) as response:
        lines = response.iter_lines()
        received = [line for _, line in zip(range(8), lines, strict=False)]
        assert all(line.startswith("data: ") or line == "" for line in received)
        assert sum(line.startswith("data: ") for line in received) >= 3, received
        assert server.metric("ovserve_engine_requests_running") == 1
    # The connection is closed: 4000 tokens would take a minute, but the engine drops the request now.
    assert wait_for(lambda: server.metric("ovserve_engine_requests_running") == 0), \
        "the engine kept generating for a client that had gone"
    assert wait_for(lambda: any("status=499" in line for line in server.lines))
    response = httpx.post(f"{server.base_url}/v3/chat/completions", timeout=60, json={
        "model": MODEL_NAME, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3})
    assert response.status_code == 200


def test_a_client_disconnecting_while_waiting_for_a_whole_answer_aborts_it(server):
    body = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "Tell me a long story."}],
            "max_tokens": 4000, "ignore_eos": True}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.base_url}/v3/chat/completions", json=body, timeout=httpx.Timeout(60, read=1.5))
    assert wait_for(lambda: server.metric("ovserve_engine_requests_running") == 0)
