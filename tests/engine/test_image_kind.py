"""The image kind in the engine process, on the tiny Stable Diffusion: its jobs, previews, cancellation and count."""

import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from ovserve.engine.image_kind import (
    EditJob,
    GenerateJob,
    ImagePartial,
    ImageSpec,
    InpaintJob,
    Picture,
    preview_steps,
)
from ovserve.engine.kinds import CallSignal
from tests.tiny_models import SD


@pytest.fixture(scope="module")
def pipelines():
    return ImageSpec(str(SD)).load().pipeline


def opened(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


@pytest.mark.parametrize(("partial_images", "steps", "chosen"), [
    (0, 50, []), (1, 50, [24]), (2, 51, [16, 33]), (3, 21, [4, 9, 15]), (3, 3, [0, 1]), (2, 1, []),
])
def test_previews_are_evenly_spaced_before_the_last_step(partial_images, steps, chosen):
    assert sorted(preview_steps(partial_images, steps)) == chosen


def test_the_three_pipelines_share_one_load(pipelines):
    assert pipelines.image2image is not None and pipelines.inpainting is not None
    assert pipelines.count_tokens("a photo of a cat") == 7  # with its start and end tokens


def test_a_generation_sends_its_previews_then_its_images(pipelines):
    partials = []
    before = pipelines.steps_run
    result = GenerateJob("a cat", (("num_inference_steps", 20), ("width", 256), ("height", 128)),
                         partial_images=2, output_format="webp").run(pipelines, partials.append, CallSignal())
    assert (result.width, result.height, len(result.images)) == (256, 128, 1)
    assert opened(result.images[0]).format == "WEBP"
    assert pipelines.steps_run - before == result.steps and 1 <= result.steps <= 21
    assert all(isinstance(partial, ImagePartial) for partial in partials) and 1 <= len(partials) <= 2
    assert opened(partials[0].images[0]).size == (256, 128)


def test_edits_and_inpainting_make_n_images_of_the_size_asked(pipelines):
    image = Picture(np.zeros((48, 80, 3), np.uint8).tobytes(), 80, 48)
    mask = Picture(np.full((48, 80, 3), 255, np.uint8).tobytes(), 80, 48)
    settings = (("num_inference_steps", 2), ("width", 80), ("height", 48))
    edited = EditJob("a dog", settings, n=2, image=image).run(pipelines, print, CallSignal())
    painted = InpaintJob("a dog", settings, n=2, image=image, mask=mask).run(pipelines, print, CallSignal())
    for result in (edited, painted):
        assert [opened(data).size for data in result.images] == [(80, 48), (80, 48)]


def test_a_cancelled_job_stops_at_the_next_step(pipelines):
    cancelled = CallSignal()
    before = pipelines.steps_run
    threading.Timer(0.2, cancelled.set).start()
    started = time.monotonic()
    result = GenerateJob("a cat", (("num_inference_steps", 1000), ("width", 256), ("height", 256))).run(
        pipelines, print, cancelled)
    assert result is None and time.monotonic() - started < 10
    assert 0 < pipelines.steps_run - before < 1000
