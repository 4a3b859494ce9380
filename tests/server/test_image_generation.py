"""/v3/images/generations and /v3/images/edits on the tiny Stable Diffusion (``models/tiny/sd``), as clients call
them: the official ``openai`` client's ``images.generate`` and ``images.edit`` (with and without a mask), streamed
partial images, a disconnect that stops the job (shown by the engine's step count), hostile input (and the server
serving on after each), a full queue, OVMS's ImageGenCalculator graphs served unchanged, and ``--task
image_generation``. The tiny model draws noise: the tests decode what comes back with Pillow and check the format
and the size, never the pixels."""

import base64
import io
import json
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.conftest import start_server
from tests.server.test_bad_input import assert_openai_error
from tests.tiny_models import SD, SD_DEFAULT_SIZE

pytestmark = pytest.mark.slow

NAME = "sd"
#: Few steps: the tests check plumbing, and each step of the tiny model takes milliseconds.
FAST = {"num_inference_steps": 2}


def picture(data: bytes | str) -> Image.Image:
    """An image the server sent (base64 or bytes), decoded."""
    image = Image.open(io.BytesIO(base64.b64decode(data) if isinstance(data, str) else data))
    image.load()
    return image


def upload(size=(80, 48), mode="RGB", color="red", image_format="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, image_format)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def sd_server(tmp_path_factory):
    """The tiny Stable Diffusion served as `ovserve serve --task image_generation` serves a folder."""
    server = start_server(["--model", str(SD), "--model-name", NAME, "--task", "image_generation"],
                          tmp_path_factory.mktemp("sd"))
    yield server
    server.stop()


@pytest.fixture
def client(sd_server):
    return sd_server.openai()


def post(server, body, path="/v3/images/generations", **options):
    return httpx.post(f"{server.base_url}{path}", json={"model": NAME, "prompt": "a cat", **FAST, **body},
                      timeout=60, **options)


def edit(server, fields, files, path="/v3/images/edits"):
    data = {"model": NAME, "prompt": "a dog", **{k: str(v) for k, v in FAST.items()}, **fields}
    return httpx.post(f"{server.base_url}{path}", data=data, files=files, timeout=60)


def still_serves(server):
    answer = post(server, {"size": "64x64"})
    assert answer.status_code == 200, answer.text
    assert picture(answer.json()["data"][0]["b64_json"]).size == (64, 64)


@pytest.mark.parametrize(("output_format", "pillow"), [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
def test_the_openai_client_generates_n_images_of_the_size_and_format_asked(client, output_format, pillow):
    result = client.images.generate(model=NAME, prompt="a cat", n=2, size="96x64", output_format=output_format,
                                    extra_body=FAST)
    assert len(result.data) == 2 and result.created > 0
    assert (result.size, result.output_format) == ("96x64", output_format)
    for image in result.data:
        decoded = picture(image.b64_json)
        assert (decoded.format, decoded.size, decoded.mode) == (pillow, (96, 64), "RGB")


def test_no_size_is_the_model_s_own_and_v1_answers_too(sd_server):
    client = sd_server.openai("/v1")
    result = client.images.generate(model=NAME, prompt="a cat", extra_body=FAST)
    assert picture(result.data[0].b64_json).size == (SD_DEFAULT_SIZE, SD_DEFAULT_SIZE)
    assert result.size == f"{SD_DEFAULT_SIZE}x{SD_DEFAULT_SIZE}"


def test_a_seed_repeats_an_image_and_output_compression_sizes_a_jpeg(client):
    def draw(**options):
        return client.images.generate(model=NAME, prompt="a cat", size="64x64", output_format="jpeg",
                                      extra_body={**FAST, "rng_seed": 7}, **options).data[0].b64_json

    assert draw() == draw()
    assert len(base64.b64decode(draw(output_compression=5))) < len(base64.b64decode(draw(output_compression=100)))


def test_the_openai_client_edits_an_image_without_a_mask(client):
    result = client.images.edit(model=NAME, prompt="a dog", image=("red.png", upload(), "image/png"),
                                extra_body={**FAST, "strength": 0.6})
    assert picture(result.data[0].b64_json).size == (80, 48)  # no size: the image's
    result = client.images.edit(model=NAME, prompt="a dog", image=("red.jpg", upload(image_format="JPEG"),
                                                                   "image/jpeg"),
                                size="64x64", n=2, output_format="webp", extra_body=FAST)
    assert [picture(image.b64_json).size for image in result.data] == [(64, 64), (64, 64)]
    assert picture(result.data[0].b64_json).format == "WEBP"


@pytest.mark.parametrize("mask", [upload(mode="L", color=255),  # OVMS's rule: white is repainted
                                  upload(mode="RGBA", color=(0, 0, 0, 0))])  # OpenAI's: transparent is repainted
def test_the_openai_client_inpaints_with_a_mask(client, mask):
    result = client.images.edit(model=NAME, prompt="a dog", image=("red.png", upload(), "image/png"),
                                mask=("mask.png", mask, "image/png"), n=2, extra_body=FAST)
    assert [picture(image.b64_json).size for image in result.data] == [(80, 48), (80, 48)]


def test_streamed_generations_send_partial_images_then_the_image(client):
    events = list(client.images.generate(model=NAME, prompt="a cat", size="256x256", stream=True, partial_images=2,
                                         output_format="jpeg", extra_body={"num_inference_steps": 20}))
    *partials, completed = events
    assert completed.type == "image_generation.completed" and completed.size == "256x256"
    assert picture(completed.b64_json).size == (256, 256) and picture(completed.b64_json).format == "JPEG"
    # previews are decoded while the denoiser runs on: at most partial_images of them, fewer if it outruns them
    assert 1 <= len(partials) <= 2
    assert [event.type for event in partials] == ["image_generation.partial_image"] * len(partials)
    assert [event.partial_image_index for event in partials] == sorted({e.partial_image_index for e in partials})
    assert all(picture(event.b64_json).size == (256, 256) for event in partials)


def test_streamed_edits_send_image_edit_events(client):
    events = list(client.images.edit(model=NAME, prompt="a dog", image=("red.png", upload((256, 256)), "image/png"),
                                     mask=("m.png", upload((256, 256), mode="L", color=255), "image/png"),
                                     stream=True, partial_images=1, extra_body={"num_inference_steps": 20}))
    assert events[-1].type == "image_edit.completed" and picture(events[-1].b64_json).size == (256, 256)
    assert {event.type for event in events[:-1]} <= {"image_edit.partial_image"}


def settled_steps(server):
    """The engine's denoising step count once it has stopped moving (three readings 0.1 s apart agree)."""
    counts = [server.metric("ovserve_image_denoise_steps")]
    for _ in range(100):
        time.sleep(0.1)
        counts.append(server.metric("ovserve_image_denoise_steps"))
        if len(counts) >= 3 and counts[-1] == counts[-2] == counts[-3]:
            return counts[-1]
    raise AssertionError(f"the step count did not settle: {counts[-10:]}")


def test_a_client_that_goes_away_stops_its_job_at_the_next_step(sd_server):
    """100 steps at 256 x 256 take seconds; the client leaves at the first preview (about a quarter of the way):
    the engine's step count stops well short of 100, and the next request is served at once."""
    before = settled_steps(sd_server)
    body = {"model": NAME, "prompt": "a cat", "size": "256x256", "num_inference_steps": 100, "stream": True,
            "partial_images": 3}
    with httpx.stream("POST", f"{sd_server.base_url}/v3/images/generations", json=body, timeout=60) as answer:
        assert answer.status_code == 200
        assert next(line for line in answer.iter_lines() if line.startswith("data: "))
    ran = settled_steps(sd_server) - before
    assert 0 < ran < 80, f"{ran} of 101 steps ran for a client that had gone"
    started = time.monotonic()
    still_serves(sd_server)
    assert time.monotonic() - started < 10


def test_a_client_that_goes_away_while_waiting_for_the_images_stops_its_job(sd_server):
    """100 steps at 512 x 512 take half a minute here; the client gives up after a second."""
    before = settled_steps(sd_server)
    body = {"model": NAME, "prompt": "a cat", "size": "512x512", "num_inference_steps": 100}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{sd_server.base_url}/v3/images/generations", json=body, timeout=httpx.Timeout(60, read=1.0))
    ran = settled_steps(sd_server) - before
    assert 0 < ran < 80, f"{ran} of 101 steps ran for a client that had gone"
    still_serves(sd_server)


@pytest.mark.parametrize(("body", "param", "words"), [
    ({"size": "60x64"}, "size", "multiples of 8"),
    ({"size": "4096x4096"}, "size", "max_resolution 2048x2048"),
    ({"size": "big"}, "size", "WIDTHxHEIGHT"),
    ({"n": 5}, "n", "limit of 4 images"),
    ({"n": 11}, "n", ""),
    ({"num_images_per_prompt": 2, "n": 3}, "num_images_per_prompt", "disagree"),
    ({"num_inference_steps": 101}, "num_inference_steps", "max_num_inference_steps"),
    ({"response_format": "url"}, "response_format", "image store"),
    ({"quality": "high"}, "quality", "num_inference_steps"),
    ({"background": "transparent"}, "background", "opaque"),
    ({"style": "vivid"}, "style", "prompt"),
    ({"strength": 0.5}, "strength", "/images/edits"),
    ({"output_compression": 50}, "output_compression", "jpeg and webp"),
    ({"stream": True, "n": 2}, "n", "one image"),
    ({"partial_images": 4, "stream": True}, "partial_images", ""),
    ({"negative_prompt": "dogs", "guidance_scale": 1.0}, "negative_prompt", "above 1"),
    ({"prompt_2": "more"}, "prompt_2", "2 or more text encoders"),
    ({"max_sequence_length": 77}, "max_sequence_length", "T5"),
    ({"prompt": " "}, "prompt", "empty"),
])
def test_bad_generations_are_a_400_naming_the_field_and_the_server_serves_on(sd_server, body, param, words):
    assert_openai_error(post(sd_server, body), 400, param, words)
    still_serves(sd_server)


MASK = upload(mode="L", color=255)


@pytest.mark.parametrize(("fields", "files", "status", "param", "words"), [
    ({}, {"image": ("x.png", b"not an image at all", "image/png")}, 400, "image", "cannot be read as an image"),
    ({}, {"image": ("x.png", upload()[:60], "image/png")}, 400, "image", "cannot be read"),
    ({}, {"image": ("x.gif", upload(image_format="GIF"), "image/gif")}, 400, "image", "PNG, JPEG or WebP"),
    ({}, {"image": ("x.png", upload()), "mask": ("m.png", b"\x89PNG broken", "image/png")}, 400, "mask", "cannot be"),
    ({}, {"image": ("x.png", upload()), "mask": ("m.png", upload((64, 64), mode="L"))}, 400, "mask",
     "the same size"),
    ({}, {"image": ("x.png", upload((60, 48)))}, 400, "image", "multiples of 8"),
    ({}, {"mask": ("m.png", MASK)}, 400, "image", "no 'image' part"),
    ({"n": "11"}, {"image": ("x.png", upload())}, 400, "n", ""),
    ({"response_format": "url"}, {"image": ("x.png", upload())}, 400, "response_format", "image store"),
    ({"input_fidelity": "high"}, {"image": ("x.png", upload())}, 400, "input_fidelity", "strength"),
    ({"strength": "1.5"}, {"image": ("x.png", upload())}, 400, "strength", ""),
    ({"strength": "0.1", "num_inference_steps": "5"}, {"image": ("x.png", upload())}, 400, "strength", "run none"),
    ({"num_inference_steps": "1"}, {"image": ("x.png", upload())}, 400, "num_inference_steps", "strength 0.8"),
])
def test_bad_edits_are_a_400_naming_the_field_and_the_server_serves_on(sd_server, fields, files, status, param,
                                                                        words):
    assert_openai_error(edit(sd_server, fields, files), status, param, words)
    still_serves(sd_server)


def test_an_image_of_too_many_pixels_is_refused_before_it_is_decoded(sd_server):
    huge = upload((5000, 4000), mode="1", color=0)  # a few kB of PNG, 20 million pixels
    assert_openai_error(edit(sd_server, {}, {"image": ("huge.png", huge)}), 400, "image", "the limit is")
    still_serves(sd_server)


def test_other_endpoints_of_an_image_model_say_what_it_serves(sd_server):
    answer = httpx.post(f"{sd_server.base_url}/v3/chat/completions", timeout=60,
                        json={"model": NAME, "messages": [{"role": "user", "content": "Hi"}]})
    assert_openai_error(answer, 400, "model", "it serves /images/generations and /images/edits")


def ovms_graph(options: str) -> str:
    """An OVMS image generation graph, as its export script writes it, with these node options."""
    return f"""
    input_stream: "HTTP_REQUEST_PAYLOAD:input"
    output_stream: "HTTP_RESPONSE_PAYLOAD:output"

    node: {{
      name: "ImageGenExecutor"
      calculator: "ImageGenCalculator"
      input_stream: "HTTP_REQUEST_PAYLOAD:input"
      input_side_packet: "IMAGE_GEN_NODE_RESOURCES:pipes"
      output_stream: "HTTP_RESPONSE_PAYLOAD:output"
      node_options: {{
          [type.googleapis.com / mediapipe.ImageGenCalculatorOptions]: {{
{options}
          }}
      }}
    }}
"""


OVMS_GRAPH = ovms_graph("""\
              models_path: "./",
              device: "CPU",
              plugin_config: '{"NUM_STREAMS": "1"}',
              max_resolution: "256x256",
              default_resolution: "128x64",
              max_num_images_per_prompt: 2,
              default_num_inference_steps: 3,
              max_num_inference_steps: 300,
              max_queued_requests: 1""")

OVMS_STATIC_GRAPH = ovms_graph("""\
              models_path: "../sd-model",
              device: "CPU",
              resolution: "64x64",
              num_images_per_prompt: 1,
              guidance_scale: 7.5,
              default_num_inference_steps: 4,
              max_num_inference_steps: 8""")


@pytest.fixture(scope="module")
def ovms_server(tmp_path_factory):
    """OVMS's image generation graphs, as its export script writes them beside the model (with limits), and with a
    static shape (resolution, num_images_per_prompt, guidance_scale)."""
    root = tmp_path_factory.mktemp("ovms-sd")
    model_dir = root / "sd-model"
    model_dir.mkdir()
    for path in SD.iterdir():
        (model_dir / path.name).symlink_to(path)
    (model_dir / "graph.pbtxt").write_text(textwrap.dedent(OVMS_GRAPH))
    (root / "static").mkdir()
    (root / "static" / "graph.pbtxt").write_text(textwrap.dedent(OVMS_STATIC_GRAPH))
    (root / "config.json").write_text(json.dumps({"model_config_list": [], "mediapipe_config_list": [
        {"name": "image_generation", "base_path": "sd-model"}, {"name": "static", "base_path": "static"}]}))
    server = start_server(["--config_path", str(root / "config.json")], root)
    yield server
    server.stop()


def steps_run(server, model):
    """The image engine's denoising steps so far (``ovserve_image_denoise_steps``) for one of the served models."""
    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    match = re.search(rf'^ovserve_image_denoise_steps{{model="{model}",[^}}]*}} ([0-9.e+-]+)$', text, re.MULTILINE)
    assert match, [line for line in text.splitlines() if "denoise" in line]
    return float(match.group(1))


def test_ovms_graphs_are_served_unchanged_with_their_limits(ovms_server):
    client = ovms_server.openai()
    before = steps_run(ovms_server, "image_generation")
    result = client.images.generate(model="image_generation", prompt="a cat")
    assert picture(result.data[0].b64_json).size == (128, 64)  # default_resolution
    # default_num_inference_steps 3 (the PNDM scheduler adds one), not GenAI's 50
    assert 1 <= steps_run(ovms_server, "image_generation") - before <= 4
    result = client.images.edit(model="image_generation", prompt="a dog", image=("x.png", upload(), "image/png"))
    assert picture(result.data[0].b64_json).size == (80, 48)

    def ask(model, body):
        return httpx.post(f"{ovms_server.base_url}/v3/images/generations", timeout=60,
                          json={"model": model, "prompt": "a cat", **body})

    assert_openai_error(ask("image_generation", {"size": "512x512"}), 400, "size", "max_resolution 256x256")
    assert_openai_error(ask("image_generation", {"n": 3}), 400, "n", "limit of 2 images")
    static = client.images.generate(model="static", prompt="a cat", extra_body=FAST)
    assert picture(static.data[0].b64_json).size == (64, 64)
    assert_openai_error(ask("static", {"size": "128x128"}), 400, "size", "takes 64x64 only")
    assert_openai_error(ask("static", {"n": 2}), 400, "n", "reshaped to 1 images")


def test_a_model_holds_at_most_its_queued_requests(ovms_server):
    """max_queued_requests 1: while one request runs (300 steps at 256 x 256: seconds), the next gets 503 with
    Retry-After; once the first client has gone, requests are served again."""
    body = {"model": "image_generation", "prompt": "a cat", "size": "256x256", "num_inference_steps": 300,
            "stream": True, "partial_images": 3}
    with httpx.stream("POST", f"{ovms_server.base_url}/v3/images/generations", json=body, timeout=60) as held:
        assert held.status_code == 200
        busy = httpx.post(f"{ovms_server.base_url}/v3/images/generations", timeout=60,
                          json={"model": "image_generation", "prompt": "a cat"})
        assert_openai_error(busy, 503)
        assert busy.headers["retry-after"] == "1"
    for _ in range(100):
        answer = httpx.post(f"{ovms_server.base_url}/v3/images/generations", timeout=60,
                            json={"model": "image_generation", "prompt": "a cat", "size": "64x64"})
        if answer.status_code == 200:
            break
        time.sleep(0.1)
    assert answer.status_code == 200


def test_no_fuzzed_generation_request_gets_a_server_error(ovms_server, tmp_path):
    """A bounded fuzz run (schemathesis) of /v3/images/generations on the static graph (64 x 64, at most 8 steps, so
    that every request it sends is fast)."""
    schemathesis = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert schemathesis is not None, "schemathesis is in the test extra"
    result = subprocess.run([schemathesis, "run", f"{ovms_server.base_url}/openapi.json", "--checks",
                             "not_a_server_error", "--include-path-regex", "/images/generations$", "--phases",
                             "fuzzing", "--max-examples", "40", "--request-timeout", "60", "--no-color"],
                            capture_output=True, text=True, check=False, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:]
    assert " passed" in result.stdout and "failed" not in result.stdout.split("SUMMARY")[-1]
    assert httpx.post(f"{ovms_server.base_url}/v3/images/generations", timeout=60,
                      json={"model": "static", "prompt": "a cat"}).status_code == 200
