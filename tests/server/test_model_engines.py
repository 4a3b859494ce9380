"""No model weights in the HTTP process: plain ``ovserve serve`` with both default models runs the chat model, the
embedding model and the scoring pass of ``top_logprobs`` each in an engine process of its own, and the server process
maps none of their weights. A killed embedding or scoring engine fails its requests with 503, never hangs, and is
restarted while the others serve on."""

import os
import re
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from ovserve.store.fetch import DEFAULT_EMBEDDING_MODEL, pull
from tests.conftest import MODEL_NAME, start_server

pytestmark = pytest.mark.slow

ENCODER = DEFAULT_EMBEDDING_MODEL.name
WEIGHTS = "openvino_model.bin"
LONG_TEXT = " ".join(["the quick brown fox jumps over the lazy dog"] * 25)  # about 250 tokens


@pytest.fixture(scope="module")
def server(default_model, tmp_path_factory):
    pull(DEFAULT_EMBEDDING_MODEL, quiet=True)
    server = start_server(["--embedding-model", ENCODER], tmp_path_factory.mktemp("engines"))
    assert until(lambda: len(server.openai().models.list().data) == 2)  # the embedding model loads after the chat one
    yield server
    server.stop()


def mapped_weights(pid: int) -> set[str]:
    """The model weight files a process has mapped (OpenVINO maps an IR's weights when it compiles the model)."""
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return {line.split(maxsplit=5)[5] for line in maps if line.endswith("/" + WEIGHTS)}


def engine_of(server, encoder: bool) -> int:
    """The engine process (a child of the server) that maps the embedding model's weights, or another model's (the
    scoring pass's IR of the chat model: the chat model's own engine reads its .gguf without mapping IR weights)."""
    for pid in server.engine_pids():
        if any((Path(path).parent.name == ENCODER) == encoder for path in mapped_weights(pid)):
            return pid
    raise AssertionError(f"no engine process of {server.process.pid} maps {'the encoder' if encoder else 'IR'} weights")


def metric(server, name: str, model: str) -> float:
    """A resource metric of one model (``/metrics`` labels them by model and node)."""
    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    match = re.search(rf'^{re.escape(name)}{{[^}}]*model="{re.escape(model)}"[^}}]*}} ([0-9.e+-]+)$', text, re.MULTILINE)
    if match is None:
        raise KeyError(f"{name} of {model} is not in /metrics")
    return float(match.group(1))


def until(check, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def scored_chat(server, max_tokens: int = 8, **extra):
    return httpx.post(f"{server.base_url}/v3/chat/completions", timeout=300, json={
        "model": MODEL_NAME, "messages": [{"role": "user", "content": "Tell me about the sea."}],
        "max_tokens": max_tokens, "logprobs": True, "top_logprobs": 3, **extra})


def test_each_model_runs_in_an_engine_process_and_the_http_process_maps_no_weights(server):
    client = server.openai()
    vectors = client.embeddings.create(model=ENCODER, input=["A man is eating food.", "A monkey drums."],
                                       encoding_format="float")
    assert [len(item.embedding) for item in vectors.data] == [384, 384]
    ranked = httpx.post(f"{server.base_url}/v3/rerank", json={"model": ENCODER, "query": "food",
                                                              "documents": ["bread", "drums"]}).json()
    assert sorted(result["index"] for result in ranked["results"]) == [0, 1]
    chat = scored_chat(server).json()
    assert all(len(token["top_logprobs"]) == 3 for token in chat["choices"][0]["logprobs"]["content"])
    echoed = httpx.post(f"{server.base_url}/v3/completions", timeout=300, json={
        "model": MODEL_NAME, "prompt": "The capital of France is", "max_tokens": 0, "echo": True, "logprobs": 1}).json()
    assert echoed["choices"][0]["logprobs"]["token_logprobs"][0] is None  # nothing predicts the first token

    engines = server.engine_pids()
    assert len(engines) == 3  # the chat model, the embedding model, the scoring pass
    for pid in engines:
        assert "ovserve.engine.worker" in Path(f"/proc/{pid}/cmdline").read_bytes().decode()
    assert mapped_weights(server.process.pid) == set()
    assert engine_of(server, encoder=True) != engine_of(server, encoder=False)  # the encoder; the scoring IR


def test_a_streamed_request_that_went_away_leaves_no_scoring_session_behind(server):
    body = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "Tell me a long story."}],
            "max_tokens": 200, "logprobs": True, "top_logprobs": 5, "stream": True, "ignore_eos": True}
    with httpx.stream("POST", f"{server.base_url}/v3/chat/completions", json=body, timeout=120) as response:
        chunks = 0
        for line in response.iter_lines():
            chunks += line.startswith("data: ")
            if chunks == 5:
                break  # the client goes away in the middle of the answer
    assert until(lambda: metric(server, "ovserve_scoring_sessions", MODEL_NAME) == 0, 30)
    assert scored_chat(server).status_code == 200


def test_a_killed_embedding_engine_fails_its_requests_with_503_and_is_restarted(server):
    killed = engine_of(server, encoder=True)
    answers = []
    big = threading.Thread(target=lambda: answers.append(httpx.post(
        f"{server.base_url}/v3/embeddings", json={"model": ENCODER, "input": [LONG_TEXT] * 1000}, timeout=120)))
    big.start()
    assert until(lambda: metric(server, "ovserve_engine_requests_waiting_for_tokens", ENCODER) >= 1, 30)
    os.kill(killed, signal.SIGKILL)
    big.join(60)
    assert not big.is_alive() and answers[0].status_code == 503, answers
    assert answers[0].json()["error"]["code"] == "model_not_ready"
    assert scored_chat(server).status_code == 200  # the chat model and its scoring pass serve on meanwhile
    assert until(lambda: httpx.post(f"{server.base_url}/v3/embeddings",
                                    json={"model": ENCODER, "input": "back"}).status_code == 200)
    assert metric(server, "ovserve_engine_starts_total", ENCODER) == 2
    assert engine_of(server, encoder=True) != killed


def test_a_killed_scoring_engine_fails_its_requests_with_503_and_is_restarted(server):
    assert scored_chat(server).status_code == 200  # the scoring engine has started
    killed = engine_of(server, encoder=False)
    answers = []
    long = threading.Thread(target=lambda: answers.append(scored_chat(server, max_tokens=400, ignore_eos=True)))
    long.start()
    assert until(lambda: metric(server, "ovserve_scoring_sessions", MODEL_NAME) >= 1, 30)
    os.kill(killed, signal.SIGKILL)
    long.join(120)
    assert not long.is_alive() and answers[0].status_code == 503, answers
    assert until(lambda: scored_chat(server).status_code == 200)
    assert metric(server, "ovserve_scoring_engine_starts_total", MODEL_NAME) == 2
    assert metric(server, "ovserve_engine_starts_total", MODEL_NAME) == 1  # the chat model's engine was not touched
    assert httpx.post(f"{server.base_url}/v3/chat/completions", json={
        "model": MODEL_NAME, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}).status_code == 200
