"""The image generation model of a graph: an image engine process, and the limits requests are checked against.

``ImageGenModel`` is the resource of OVMS's ``ImageGenCalculator`` node (its options are
``ImageGenCalculatorOptions``, OVMS's names and defaults). It starts one engine process
(:mod:`ovserve.engine.image_kind`) and hands the image node an :class:`ImageModel`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from pydantic import ConfigDict, Field, field_validator, model_validator

from ovserve import Resource, ResourceContext, SideOutput
from ovserve.calculators.engine_resource import DeviceOptions, EngineBacked, HoldsRequests
from ovserve.calculators.images.inputs import DEFAULT_MAX_IMAGE_BYTES, PictureLimits
from ovserve.calculators.images.schema import parse_size
from ovserve.engine.call_client import CallEngine
from ovserve.engine.image_kind import DEFAULT_MAX_QUEUED_JOBS, ImageSpec
from ovserve.engine.process import DEFAULT_STEP_TIMEOUT
from ovserve.errors import RequestError
from ovserve.store.catalog import is_image_generation_ir, models_path_in_graph

log = logging.getLogger("ovserve.calculators")


def size_option(value: str | None, name: str) -> str | None:
    """A size option checked: ``WIDTHxHEIGHT``; ``resolution`` may list several, space-separated, as in OVMS."""
    if value is not None:
        sizes = value.split() if name == "resolution" else [value]
        if not sizes:
            raise ValueError(f"{name} is empty: give WIDTHxHEIGHT")
        for size in sizes:
            parse_size(size, name)
        if len(set(sizes)) != len(sizes):
            raise ValueError(f"{name} lists a size twice: {value!r}")
    return value


class ImageGenCalculatorOptions(DeviceOptions):
    """OVMS's ``mediapipe.ImageGenCalculatorOptions``, with its defaults (``models_path``, ``device``,
    ``plugin_config``, ``max_resolution``, ``default_resolution``, ``max_num_images_per_prompt``,
    ``default_num_inference_steps``, ``max_num_inference_steps``, and the static shape: ``resolution``,
    ``num_images_per_prompt``, ``guidance_scale``), plus ovserve's own bounds."""

    model_config = ConfigDict(extra="forbid")

    models_path: str = Field(description="an image generation IR folder (model_index.json and a folder per model), "
                                         "relative to the graph file, or a model in the store")
    max_resolution: str = Field("4096x4096", description="the largest WIDTHxHEIGHT a request may ask for")
    default_resolution: str | None = Field(None, description="WIDTHxHEIGHT when a request names no size (none: the "
                                                             "model's own)")
    max_num_images_per_prompt: int = Field(10, ge=1, description="the most images a request may ask for (n)")
    default_num_inference_steps: int = Field(50, ge=1, description="the steps when a request names none")
    max_num_inference_steps: int = Field(100, ge=1, description="the most steps a request may ask for")
    resolution: str | None = Field(None, description="the sizes requests may ask for, space-separated; one: a static "
                                                     "WIDTHxHEIGHT the models are reshaped to")
    num_images_per_prompt: int | None = Field(None, ge=1, description="with one resolution: the static batch size")
    guidance_scale: float | None = Field(None, ge=0, description="with one resolution: the static guidance scale")
    composite_lora_adapters: list[dict[str, object]] = Field(default_factory=list, description="OVMS's LoRA "
                                                             "presets: not served by ovserve, as lora_adapters")
    lora_adapters: list[dict[str, object]] = Field(default_factory=list, description="OVMS's LoRA adapters: not "
                                                   "served by ovserve (a graph that lists some fails to load)")
    max_queued_requests: int = Field(DEFAULT_MAX_QUEUED_JOBS, ge=1, description="ovserve's own: the most requests "
                                     "the model holds at once, running or waiting; more get 503 with Retry-After")
    max_image_bytes: int = Field(DEFAULT_MAX_IMAGE_BYTES, ge=1, description="ovserve's own: the largest image or "
                                 "mask an edit may upload (413 above it)")
    engine_step_timeout: float = Field(DEFAULT_STEP_TIMEOUT, ge=0, description="ovserve's own: seconds without word "
                                       "from the engine, with requests in flight, after which it is restarted (0: "
                                       "never)")

    _sizes = field_validator("max_resolution", "default_resolution", "resolution")(
        lambda value, info: size_option(value, info.field_name))

    @property
    def resolutions(self) -> tuple[tuple[int, int], ...]:
        """The static sizes (``resolution``), none when it is not set."""
        return tuple(parse_size(size, "resolution") for size in (self.resolution or "").split())

    @model_validator(mode="after")
    def _coherent(self) -> ImageGenCalculatorOptions:
        if self.lora_adapters or self.composite_lora_adapters:
            raise ValueError("lora_adapters are not served by ovserve: merge the adapter into the model, or leave "
                             "them out")
        self._static_shape_coherent()
        if self.default_resolution is not None:
            default = parse_size(self.default_resolution, "default_resolution")
            maximum = parse_size(self.max_resolution, "max_resolution")
            if default[0] > maximum[0] or default[1] > maximum[1]:
                raise ValueError(f"default_resolution {self.default_resolution} is over max_resolution "
                                 f"{self.max_resolution}")
            if self.resolutions and default not in self.resolutions:
                raise ValueError(f"default_resolution {self.default_resolution} is not among the static "
                                 f"resolutions ({self.resolution})")
        return self._steps_coherent()

    def _static_shape_coherent(self) -> None:
        """OVMS's rules: one device or three (text encoder, denoiser, VAE); a static batch size or guidance scale
        needs one static resolution."""
        if len(self.chosen_device.split()) not in (1, 3):
            raise ValueError(f"device '{self.chosen_device}': give one device, or three (text encoder, denoiser, "
                             f"VAE), e.g. 'CPU GPU GPU'")
        for name in ("num_images_per_prompt", "guidance_scale"):
            if getattr(self, name) is not None and len(self.resolutions) != 1:
                raise ValueError(f"{name} sets the static shape: it needs one 'resolution' (got "
                                 f"{self.resolution or 'none'})")

    def _steps_coherent(self) -> ImageGenCalculatorOptions:
        if self.default_num_inference_steps > self.max_num_inference_steps:
            raise ValueError(f"default_num_inference_steps ({self.default_num_inference_steps}) is above "
                             f"max_num_inference_steps ({self.max_num_inference_steps})")
        return self


@dataclass
class ImageModel(HoldsRequests):
    """What the image node needs of the model: its engine, the graph's limits, the multiple its sizes must be of,
    which of OVMS's extra prompts it reads, and a bound on the requests it holds (counted from before an edit's
    uploads are decoded)."""

    model_kind: ClassVar[str] = "image_generation"

    engine: CallEngine
    max_resolution: tuple[int, int]
    default_resolution: tuple[int, int] | None
    max_images: int
    default_steps: int
    max_steps: int
    static_resolutions: tuple[tuple[int, int], ...] = ()
    static_images: int | None = None
    static_guidance: float | None = None
    size_multiple: int = 8
    text_encoders: int = 1
    t5: bool = False
    picture_limits: PictureLimits = field(default_factory=PictureLimits)
    max_held: int = DEFAULT_MAX_QUEUED_JOBS
    held: int = 0

    def check_size(self, width: int, height: int, field: str) -> None:
        """A 400 naming ``field`` for a size the graph or the model does not take."""
        if self.static_resolutions and (width, height) not in self.static_resolutions:
            sizes = ", ".join(f"{w}x{h}" for w, h in self.static_resolutions)
            raise RequestError(f"{field} {width}x{height}: this model takes {sizes} only (its static resolution)",
                               param=field, code="unsupported_size")
        max_width, max_height = self.max_resolution
        if width > max_width or height > max_height:
            raise RequestError(f"{field} {width}x{height} is over this model's max_resolution "
                               f"{max_width}x{max_height}", param=field, code="unsupported_size")
        if width % self.size_multiple or height % self.size_multiple:
            raise RequestError(f"{field} {width}x{height}: width and height must be multiples of "
                               f"{self.size_multiple} for this model", param=field, code="unsupported_size")


def model_shape(folder: Path) -> tuple[int, int, bool]:
    """The multiple image sides must be of (the VAE's scale: 2 ** (its blocks - 1); twice that for FLUX, which packs
    latents in 2x2 patches), how many text encoders the model has, and whether one is a T5 (SD3, FLUX)."""
    def read(path: Path) -> dict[str, object]:
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    pipeline = str(read(folder / "model_index.json").get("_class_name", ""))
    blocks = read(folder / "vae_decoder" / "config.json").get("block_out_channels")
    scale = 2 ** (len(blocks) - 1) if isinstance(blocks, list) and blocks else 8
    encoders = sum((folder / name).is_dir() for name in ("text_encoder", "text_encoder_2", "text_encoder_3"))
    flux = "Flux" in pipeline
    return scale * (2 if flux else 1), max(encoders, 1), flux or "StableDiffusion3" in pipeline


class ImageGenModel(EngineBacked, Resource):
    """Starts the image engine process for ``models_path`` and provides it, with the graph's limits, as
    ``IMAGES``."""

    IMAGES = SideOutput(ImageModel, doc="the image engine and the graph's limits")

    Options = ImageGenCalculatorOptions
    options_type = "mediapipe.ImageGenCalculatorOptions"

    async def open(self, ctx: ResourceContext) -> None:
        options: ImageGenCalculatorOptions = ctx.options
        folder = models_path_in_graph(ctx.base_path, options.models_path)
        if not is_image_generation_ir(folder):
            raise FileNotFoundError(f"models_path '{folder}' is not an image generation OpenVINO IR folder "
                                    f"(model_index.json and unet/ or transformer/ openvino_model.xml); "
                                    f"'ovserve pull OpenVINO/stable-diffusion-v1-5-int8-ov' fetches one")
        resolutions = options.resolutions
        static = resolutions[0] if len(resolutions) == 1 else None  # several: the models stay dynamic
        spec = ImageSpec(str(folder), options.chosen_device, dict(options.plugin_config),
                         max_queued=options.max_queued_requests, resolution=static,
                         num_images_per_prompt=options.num_images_per_prompt, guidance_scale=options.guidance_scale)
        self.engine = CallEngine(spec, step_timeout=options.engine_step_timeout or None)
        await self.engine.start()
        multiple, encoders, t5 = model_shape(folder)
        default = options.default_resolution or (options.resolution if static else None)
        log.info("%s: image generation on %s, sizes up to %s in multiples of %d", folder.name, spec.device,
                 options.max_resolution, multiple)
        ctx.set(self.IMAGES, ImageModel(
            self.engine, parse_size(options.max_resolution, "max_resolution"),
            parse_size(default, "default_resolution") if default else None, options.max_num_images_per_prompt,
            options.default_num_inference_steps, options.max_num_inference_steps, resolutions,
            # reshaped, the models take their batch size only (OVMS's default: 1)
            options.num_images_per_prompt or (1 if static else None), options.guidance_scale, multiple, encoders, t5,
            PictureLimits(options.max_image_bytes), options.max_queued_requests))

    def metrics(self) -> dict[str, float]:
        """The engine's gauges, with ``image_denoise_steps``: the denoising steps its current process has run (0
        until its first job reports)."""
        return {**self.engine.metrics(), "image_denoise_steps": 0.0, **self.engine.engine_stats}
