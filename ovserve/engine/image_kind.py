"""The image generation kind: OpenVINO GenAI's ``Text2ImagePipeline``, ``Image2ImagePipeline`` and
``InpaintingPipeline`` behind the engine boundary.

The server sends an :class:`ImageSpec`; the engine process builds the three pipelines from one another, as OVMS
does, so that the model's weights load once (:func:`build_pipelines`), and runs each job as one ``generate`` call:
:class:`GenerateJob` (text to image), :class:`EditJob` (image to image) and :class:`InpaintJob` (an image and a
mask). A job comes back as an :class:`ImageResult` holding the images already encoded (PNG, JPEG or WebP): the
HTTP process never touches pixels of the output.

What GenAI 2026.4 does that the jobs are built around:

- ``generate`` takes a step callback ``(step, num_steps, latent) -> bool``, which GenAI runs in a thread of its own,
  fed by a queue: the denoising loop does not wait for it, stops at its next step once a callback returned True
  (``generate`` then returns an empty tensor), and drops the callbacks still queued when its last step ends.
  The jobs return :meth:`CallSignal.is_set`, so a client that goes away stops its job at the next step, and
  count every step run (:attr:`ImagePipelines.steps_run`, reported as the engine's ``image_denoise_steps`` gauge).
- A preview costs a VAE decode (``pipeline.decode(latent)``): only the steps :func:`preview_steps` picks (at most
  three, evenly spaced) are decoded, each sent as an :class:`ImagePartial`. Since the loop does not wait for the
  callback, a denoiser faster than the decoder finishes before every preview is made: a job sends at most
  ``partial_images`` previews, fewer then (as OpenAI's API says it may), and the steps counted are those whose
  callback ran.
- A pipeline is not safe to call from two threads ("Infer Request is busy"), and has no ``clone()``: one call at a
  time (:class:`ImageCore`, ``concurrency=1``).
- Inpainting with ``num_images_per_prompt`` > 1 fails in GenAI (its latents and the image's differ in batch): an
  inpainting job makes its images one call at a time, each with the next seed.
- With no ``rng_seed`` GenAI seeds with 42, so every call would draw the same image: the server picks a random seed
  for a request that names none.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ovserve.engine.folder_spec import FolderSpec
from ovserve.engine.kinds import CallCore, CallJob, CallSignal, EngineCore

#: How many jobs an image engine holds by default, running and waiting.
DEFAULT_MAX_QUEUED_JOBS = 4
#: How a job that the model has no pipeline for fails (the server answers it with a 400).
NO_PIPELINE = "this model has no"
#: The output formats the jobs encode, with Pillow's names for them.
PILLOW_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


@dataclass(frozen=True)
class ImageSpec(FolderSpec):
    """An image generation model to serve: its OpenVINO IR ``folder`` (``model_index.json`` and a folder per
    component), the device (one, or three space-separated: text encoder, denoiser, VAE, as OVMS's ``device``), OpenVINO
    properties, how many jobs it may hold, and OVMS's static shape (``resolution`` as (width, height), with
    ``num_images_per_prompt`` and ``guidance_scale``): when set, the models are reshaped to it before they compile."""

    max_queued: int = DEFAULT_MAX_QUEUED_JOBS
    resolution: tuple[int, int] | None = None
    num_images_per_prompt: int | None = None
    guidance_scale: float | None = None

    def load(self) -> EngineCore:
        import openvino_genai

        pipelines = build_pipelines(self)
        tokenizer = Path(self.folder) / "tokenizer"
        if (tokenizer / "openvino_tokenizer.xml").is_file():
            pipelines.tokenizer = openvino_genai.Tokenizer(str(tokenizer))
        return ImageCore(pipelines, concurrency=1)


@dataclass
class ImagePipelines:
    """What the jobs run on, in the engine process: the text-to-image pipeline, and the image-to-image and inpainting
    ones where the model has them (``None`` otherwise), sharing one copy of the weights; and the denoising steps run
    since the engine started."""

    text2image: Any
    image2image: Any = None
    inpainting: Any = None
    steps_run: int = 0
    #: The model's (first) tokenizer, to count a prompt's tokens; ``None`` when it has none GenAI reads.
    tokenizer: Any = None

    def count_tokens(self, prompt: str) -> int:
        """The tokens the first text encoder reads ``prompt`` as (0 without a tokenizer)."""
        if self.tokenizer is None:
            return 0
        return int(self.tokenizer.encode(prompt).input_ids.get_shape()[-1])


def build_pipelines(spec: ImageSpec) -> ImagePipelines:
    """The three pipelines, built from one another: inpainting from the folder, image-to-image from it, text-to-image
    from that (as OVMS builds them). A model that has no inpainting (or no image-to-image) pipeline in GenAI gets the
    ones it has; one that has no text-to-image pipeline fails the load with GenAI's reason."""
    import openvino_genai

    from ovserve.engine.llm_core import checked_device

    devices = spec.target_device.split()
    if len(devices) not in (1, 3):
        raise ValueError(f"device '{spec.target_device}': give one device, or three (text encoder, denoiser, VAE), "
                         f"e.g. 'CPU GPU GPU'")
    devices = [checked_device(device) for device in devices]
    static = spec.resolution is not None or len(devices) == 3

    def loaded(kind: Any) -> Any:
        if not static:
            return kind(spec.folder, devices[0], **spec.plugin_config)
        pipeline = kind(spec.folder)
        if spec.resolution is not None:
            width, height = spec.resolution
            pipeline.reshape(spec.num_images_per_prompt or 1, height, width,
                             spec.guidance_scale if spec.guidance_scale is not None else
                             pipeline.get_generation_config().guidance_scale)
        pipeline.compile(*devices, **spec.plugin_config)
        return pipeline

    try:
        inpainting = loaded(openvino_genai.InpaintingPipeline)
    except RuntimeError:
        inpainting = None
    if inpainting is not None:
        image2image = openvino_genai.Image2ImagePipeline(inpainting)
        return ImagePipelines(openvino_genai.Text2ImagePipeline(image2image), image2image, inpainting)
    try:
        image2image = loaded(openvino_genai.Image2ImagePipeline)
    except RuntimeError:
        return ImagePipelines(loaded(openvino_genai.Text2ImagePipeline))
    return ImagePipelines(openvino_genai.Text2ImagePipeline(image2image), image2image)


class ImageCore(CallCore):
    """The image kind's core: one call at a time; reports the denoising steps run (``image_denoise_steps``)."""

    pipeline: ImagePipelines

    def stats(self) -> dict[str, float]:
        return {"image_denoise_steps": float(self.pipeline.steps_run)}


@dataclass(frozen=True)
class ImagePartial:
    """A preview of the images at a step: ``index`` (0 for the first preview), each image encoded, and their size."""

    index: int
    images: tuple[bytes, ...]
    width: int = 0
    height: int = 0


@dataclass(frozen=True)
class ImageResult:
    """What a job gives back: the images encoded in the asked format, their size, the steps the call ran, and the
    tokens the prompt was read as."""

    images: tuple[bytes, ...]
    width: int
    height: int
    steps: int
    input_tokens: int = 0


@dataclass(frozen=True)
class Picture:
    """An input image (or mask) as raw RGB bytes, row by row, and its size: what GenAI takes ([1, H, W, 3] uint8)."""

    rgb: bytes
    width: int
    height: int

    def tensor(self) -> Any:
        import numpy as np
        import openvino

        pixels = np.frombuffer(self.rgb, dtype=np.uint8).reshape(1, self.height, self.width, 3)
        return openvino.Tensor(np.ascontiguousarray(pixels))


def preview_steps(partial_images: int, steps: int) -> frozenset[int]:
    """The steps (0-based) whose latent is decoded as a preview: ``partial_images`` of them, evenly spaced and before
    the last step (the last is the final image), fewer when there are not enough steps."""
    if partial_images <= 0 or steps <= 1:
        return frozenset()
    return frozenset(min(max(round(index * steps / (partial_images + 1)) - 1, 0), steps - 2)
                     for index in range(1, partial_images + 1))


def encode_images(pixels: Any, output_format: str, compression: int | None) -> tuple[bytes, ...]:
    """A [N, H, W, 3] uint8 array as N files in ``output_format``; ``compression`` (0-100, jpeg and webp) is OpenAI's
    ``output_compression``: 100 keeps the most detail."""
    from PIL import Image

    options: dict[str, Any] = {}
    if output_format in ("jpeg", "webp"):
        options["quality"] = 95 if compression is None else max(1, compression)
    files = []
    for picture in pixels:
        buffer = io.BytesIO()
        Image.fromarray(picture, "RGB").save(buffer, PILLOW_FORMATS[output_format], **options)
        files.append(buffer.getvalue())
    return tuple(files)


@dataclass(frozen=True)
class ImageJob(CallJob):
    """What every image job has: the prompt, GenAI's generation settings (``width``, ``height``,
    ``num_inference_steps``, ``guidance_scale``, ``negative_prompt``, ``rng_seed``, ... as ``(name, value)`` pairs),
    how many images, how many previews to send, and how to encode them."""

    prompt: str
    settings: tuple[tuple[str, Any], ...] = ()
    n: int = 1
    partial_images: int = 0
    output_format: str = "png"
    output_compression: int | None = None
    #: The seed of the first image; an inpainting job's next images take the next seeds.
    rng_seed: int = 0

    def pipeline_of(self, pipelines: ImagePipelines) -> Any:
        """The pipeline this job runs on."""
        return pipelines.text2image

    def call(self, pipeline: Any, callback: Any, seed: int, images: int) -> Any:
        """One ``generate`` call making ``images`` images from ``seed``."""
        return pipeline.generate(self.prompt, callback=callback, rng_seed=seed, num_images_per_prompt=images,
                                 **dict(self.settings))

    def calls(self) -> list[tuple[int, int]]:
        """The calls the job makes, as (seed, images): one for all its images."""
        return [(self.rng_seed, self.n)]

    def run(self, pipelines: ImagePipelines, emit: Any, cancelled: CallSignal) -> ImageResult | None:
        import numpy as np

        pipeline = self.pipeline_of(pipelines)
        if cancelled.is_set():
            return None
        outputs: list[Any] = []
        steps_run = 0
        previews: dict[int, list[bytes]] = {}
        calls = self.calls()
        for number, (seed, count) in enumerate(calls):
            chosen: frozenset[int] | None = None

            def callback(step: int, steps: int, latent: Any, number: int = number) -> bool:
                nonlocal steps_run, chosen
                pipelines.steps_run += 1
                steps_run += 1
                if chosen is None:
                    chosen = preview_steps(self.partial_images, steps)
                if step in chosen and not cancelled.is_set():
                    order = sorted(chosen).index(step)
                    pixels = np.array(pipeline.decode(copied(latent)).data)
                    previews.setdefault(order, []).extend(encode_images(pixels, self.output_format,
                                                                        self.output_compression))
                    if number == len(calls) - 1:  # every call's preview of this order is in: send them together
                        emit(ImagePartial(order, tuple(previews.pop(order)), pixels.shape[2], pixels.shape[1]))
                return cancelled.is_set()

            result = self.call(pipeline, callback, seed, count)
            if cancelled.is_set() or len(result.shape) != 4:
                return None
            outputs.append(np.array(result.data, copy=True))
        pixels = np.concatenate(outputs) if len(outputs) > 1 else outputs[0]
        images = encode_images(pixels, self.output_format, self.output_compression)
        return ImageResult(images, int(pixels.shape[2]), int(pixels.shape[1]), steps_run,
                           pipelines.count_tokens(self.prompt))


def copied(latent: Any) -> Any:
    """A copy of a step's latent: GenAI's loop goes on writing into the one it passed while the callback decodes."""
    import numpy as np
    import openvino

    return openvino.Tensor(np.array(latent.data, copy=True))


@dataclass(frozen=True)
class GenerateJob(ImageJob):
    """Text to image: ``n`` images from the prompt, in one call (the UNet runs them as one batch)."""


@dataclass(frozen=True)
class EditJob(ImageJob):
    """Image to image: ``n`` images from ``image`` and the prompt; ``settings`` may hold ``strength``."""

    image: Picture = field(default_factory=lambda: Picture(b"", 0, 0))

    def pipeline_of(self, pipelines: ImagePipelines) -> Any:
        if pipelines.image2image is None:
            raise ValueError(f"{NO_PIPELINE} image-to-image pipeline in OpenVINO GenAI")
        return pipelines.image2image

    def call(self, pipeline: Any, callback: Any, seed: int, images: int) -> Any:
        return pipeline.generate(self.prompt, self.image.tensor(), callback=callback, rng_seed=seed,
                                 num_images_per_prompt=images, **dict(self.settings))


@dataclass(frozen=True)
class InpaintJob(EditJob):
    """Inpainting: ``n`` images that repaint the white pixels of ``mask`` (the image's size) in ``image``; one call
    per image (GenAI's inpainting fails on a batch), each with the next seed."""

    mask: Picture = field(default_factory=lambda: Picture(b"", 0, 0))

    def pipeline_of(self, pipelines: ImagePipelines) -> Any:
        if pipelines.inpainting is None:
            raise ValueError(f"{NO_PIPELINE} inpainting pipeline in OpenVINO GenAI")
        return pipelines.inpainting

    def calls(self) -> list[tuple[int, int]]:
        return [((self.rng_seed + index) % 2**63, 1) for index in range(self.n)]

    def call(self, pipeline: Any, callback: Any, seed: int, images: int) -> Any:
        return pipeline.generate(self.prompt, self.image.tensor(), self.mask.tensor(), callback=callback,
                                 rng_seed=seed, num_images_per_prompt=images, **dict(self.settings))
