"""Images in chat, end to end over HTTP on the tiny committed LLaVA with the official ``openai`` client: data URLs
and allowed local paths, unary and streamed; four image chats sharing engine steps; every bad image a 400 naming its
field; remote images fetched from a local HTTP server only where the operator turned fetching on. The weights are
random: the tests check plumbing, shapes, usage and errors, never what the answer says."""

import asyncio
import base64
import http.server
import io
import json
import threading
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from tests.conftest import start_server
from tests.ovms_graphs import ovms_llm_graph
from tests.server.test_bad_input import assert_openai_error
from tests.tiny_models import LLAVA, LLAVA_IMAGE_TOKENS

pytestmark = pytest.mark.slow  # real servers

NAME = "llava-tiny"
#: Each image is its tokens and a newline in the prompt (tests/engine/test_vision.py checks it against GenAI).
IMAGE_COST = LLAVA_IMAGE_TOKENS + 1


def png(width: int = 40, height: int = 30, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def chat(*images: str, text: str = "What is in the picture?", detail: str | None = None) -> list[dict]:
    parts = [{"type": "image_url", "image_url": {"url": url, **({"detail": detail} if detail else {})}}
             for url in images]
    return [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("media")
    (folder / "cat.png").write_bytes(png(64, 48, 1))
    return folder


@pytest.fixture(scope="module")
def vision(tmp_path_factory, media):
    server = start_server([str(LLAVA), "--model-name", NAME, "--embedding-model", "none",
                           "--allowed-local-media-path", str(media), "--enable-prefix-caching", "false"],
                          tmp_path_factory.mktemp("vision"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(vision) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{vision.base_url}/v3", api_key="unused", max_retries=0)


def text_only_prompt_tokens(client) -> int:
    answer = client.chat.completions.create(model=NAME, messages=chat(), max_tokens=2)
    return answer.usage.prompt_tokens


def test_a_data_url_image_is_answered_and_counted_in_usage(client):
    base = text_only_prompt_tokens(client)
    answer = client.chat.completions.create(model=NAME, messages=chat(data_url(png())), max_tokens=8)
    (choice,) = answer.choices
    assert choice.finish_reason == "length" and choice.message.content
    assert answer.usage.completion_tokens == 8
    assert answer.usage.prompt_tokens == base + IMAGE_COST
    two = client.chat.completions.create(model=NAME, messages=chat(data_url(png()), data_url(png(seed=2)),
                                                                   detail="low"), max_tokens=2)
    assert two.usage.prompt_tokens == base + 2 * IMAGE_COST


def test_an_allowed_local_path_streams(client, media):
    chunks = list(client.chat.completions.create(
        model=NAME, messages=chat(str(media / "cat.png")), max_tokens=6, stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    assert chunks[-1].usage.completion_tokens == 6
    assert chunks[-1].usage.prompt_tokens == text_only_prompt_tokens(client) + IMAGE_COST
    as_url = client.chat.completions.create(model=NAME, messages=chat(f"file://{media / 'cat.png'}"), max_tokens=2)
    assert as_url.choices[0].message.content


def test_n_and_logprobs_work_with_images_and_top_logprobs_is_refused(client, vision):
    answer = client.chat.completions.create(model=NAME, messages=chat(data_url(png())), max_tokens=3, n=2,
                                            logprobs=True, seed=1)
    assert [c.index for c in answer.choices] == [0, 1]
    assert all(len(c.logprobs.content) == 3 for c in answer.choices)
    response = httpx.post(f"{vision.base_url}/v3/chat/completions", timeout=60, json={
        "model": NAME, "messages": chat(data_url(png())), "max_tokens": 2, "logprobs": True, "top_logprobs": 2})
    assert_openai_error(response, 400, "top_logprobs", "vision model")


def test_structured_output_holds_with_images(client):
    """The engine's grammar holds the random model to the answers allowed, image or not."""
    answer = client.chat.completions.create(model=NAME, messages=chat(data_url(png())), max_tokens=8,
                                            extra_body={"structured_outputs": {"choice": ["cat", "dog"]}})
    assert answer.choices[0].message.content in ("cat", "dog")


async def test_four_image_chats_share_engine_steps(vision):
    server = vision
    client = openai.AsyncOpenAI(base_url=f"{server.base_url}/v3", api_key="unused", max_retries=0)
    tokens = 24

    async def one(seed: int) -> int:
        stream = await client.chat.completions.create(
            model=NAME, messages=chat(data_url(png(seed=seed))), max_tokens=tokens, stream=True,
            stream_options={"include_usage": True})
        return [chunk async for chunk in stream][-1].usage.completion_tokens

    before = server.metric("ovserve_engine_steps_total")
    assert [await one(seed) for seed in range(4)] == [tokens] * 4
    alone = server.metric("ovserve_engine_steps_total") - before
    before = server.metric("ovserve_engine_steps_total")
    assert await asyncio.gather(*(one(seed) for seed in range(4))) == [tokens] * 4
    together = server.metric("ovserve_engine_steps_total") - before
    assert alone >= 4 * tokens
    assert together < alone / 2, (together, alone)


def bad_images(media: Path, remote: str) -> list[tuple[list[dict], str, str]]:
    part = "messages[0].content[0].image_url"
    outside = media.parent / "outside.png"
    outside.write_bytes(png())
    huge = io.BytesIO()
    Image.new("L", (5000, 4000)).save(huge, format="PNG")
    return [
        (chat(data_url(png()[:60])), part, "corrupt"),
        (chat("data:image/png;base64,not*base64"), part, "corrupt"),
        (chat(data_url(huge.getvalue())), part, "pixels"),
        (chat(*[data_url(png(8, 8))] * 9), "messages", "limit of 8"),
        (chat(data_url(b"just some text", "text/plain")), part, "not an image"),
        (chat(data_url(b"just some text")), part, "not an image"),
        (chat(remote), part, "does not fetch"),
        (chat(str(outside)), part, "outside the folder"),
        (chat(str(media / ".." / "outside.png")), part, "outside the folder"),
        (chat("ftp://example.com/a.png"), part, "data URL"),
    ]


def test_each_bad_image_is_a_400_naming_its_field_and_the_server_serves_on(vision, client, media):
    server = vision
    for messages, param, words in bad_images(media, "http://127.0.0.1:9/cat.png"):
        response = httpx.post(f"{server.base_url}/v3/chat/completions", timeout=60,
                              json={"model": NAME, "messages": messages, "max_tokens": 2})
        assert_openai_error(response, 400, param, words)
    bad = httpx.post(f"{server.base_url}/v3/chat/completions", timeout=60, json={
        "model": NAME, "messages": chat(data_url(png()), detail="tiny"), "max_tokens": 2})
    assert bad.status_code == 400 and "detail" in bad.text
    completions = httpx.post(f"{server.base_url}/v3/completions", timeout=60,
                             json={"model": NAME, "prompt": "Hello", "max_tokens": 2})
    assert_openai_error(completions, 400, "prompt", "vision model")
    assert client.chat.completions.create(model=NAME, messages=chat(data_url(png())), max_tokens=2).choices


class _Images(http.server.BaseHTTPRequestHandler):
    """Serves /cat.png, and /away, a redirect to another host name for the same server."""

    def do_GET(self) -> None:  # http.server calls it by this name
        if self.path == "/cat.png":
            body = png(32, 32, 3)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/away":
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{self.server.server_port}/cat.png")
            self.end_headers()
        else:
            self.send_error(404)

    def log_message(self, *args) -> None:
        pass


def test_remote_images_are_fetched_only_from_allowed_hosts(tmp_path):
    images = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    threading.Thread(target=images.serve_forever, daemon=True).start()
    port = images.server_port
    server = start_server([str(LLAVA), "--model-name", NAME, "--embedding-model", "none",
                           "--allowed-media-domains", "127.0.0.1"], tmp_path)
    try:
        client = openai.OpenAI(base_url=f"{server.base_url}/v3", api_key="unused", max_retries=0)
        answer = client.chat.completions.create(model=NAME, messages=chat(f"http://127.0.0.1:{port}/cat.png"),
                                                max_tokens=2)
        assert answer.choices[0].message.content
        part = "messages[0].content[0].image_url"
        for url, words in ((f"http://127.0.0.1:{port}/away", "redirect to another host"),
                           (f"http://localhost:{port}/cat.png", "not one this server fetches"),
                           (f"http://127.0.0.1:{port}/missing.png", "404"),
                           ("/srv/cat.png", "takes none")):
            response = httpx.post(f"{server.base_url}/v3/chat/completions", timeout=60,
                                  json={"model": NAME, "messages": chat(url), "max_tokens": 2})
            assert_openai_error(response, 400, part, words)
    finally:
        server.stop()
        images.shutdown()


def test_a_text_only_model_refuses_an_image_part(server):
    """The shared server on the default (text) model."""
    response = httpx.post(f"{server.base_url}/v3/chat/completions", timeout=60, json={
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Look:"}, {"type": "image_url", "image_url": {"url": data_url(png())}}]}]})
    assert_openai_error(response, 400, "messages[0].content[1]", "text only")


def test_responses_take_input_image_parts(client, vision):
    response = client.responses.create(model=NAME, max_output_tokens=4, store=False, input=[{
        "type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "What is in the picture?"},
            {"type": "input_image", "image_url": data_url(png()), "detail": "high"}]}])
    assert response.status == "incomplete" and response.output_text
    assert response.usage.input_tokens == text_only_prompt_tokens(client) + IMAGE_COST
    for part, param, words in (({"type": "input_image", "image_url": data_url(b"no image")},
                                "input[0].content[1].image_url", "not an image"),
                               ({"type": "input_image", "file_id": "file-1"}, "input[0].content[1].image_url",
                                "file_id")):
        bad = httpx.post(f"{vision.base_url}/v3/responses", timeout=60, json={
            "model": NAME, "input": [{"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "Look:"}, part]}]})
        assert_openai_error(bad, 400, param, words)


#: OVMS's graph for a VLM (as its export_model.py writes it for --pipeline_type VLM_CB), the pipeline type left open.
OVMS_VLM_GRAPH = ovms_llm_graph("""
      models_path: "./",
      plugin_config: '{ }',
      enable_prefix_caching: false,
      cache_size: 1,
      pipeline_type: PIPELINE,
      max_num_seqs: 16,
      device: "CPU",
""")


def test_ovms_vlm_cb_and_vlm_graphs_are_served_on_their_pipelines(tmp_path):
    names = {"VLM_CB": "llava-cb", "VLM": "llava-one"}
    for pipeline, name in names.items():
        folder = tmp_path / name
        folder.mkdir()
        for file in LLAVA.iterdir():
            (folder / file.name).symlink_to(file)
        (folder / "graph.pbtxt").write_text(OVMS_VLM_GRAPH.replace("PIPELINE", pipeline))
    (tmp_path / "config.json").write_text(json.dumps({"model_config_list": [], "mediapipe_config_list": [
        {"name": name, "base_path": name} for name in names.values()]}))
    server = start_server(["--config_path", str(tmp_path / "config.json")], tmp_path)
    try:
        client = openai.OpenAI(base_url=f"{server.base_url}/v3", api_key="unused", max_retries=0)
        for name in names.values():
            answer = client.chat.completions.create(model=name, messages=chat(data_url(png())), max_tokens=3)
            assert answer.usage.completion_tokens == 3
        assert "the stateful pipeline (OpenVINO GenAI's VLMPipeline), one request at a time" in server.output()
    finally:
        server.stop()
