"""Images in chat on the continuous-batching engine: the job that carries them and what the engine does with it.

OpenVINO GenAI's ``ContinuousBatchingPipeline.add_request(id, prompt, images, config)`` takes a vision model's
prompt as **text** (GenAI tokenizes it and puts each image's tokens where its ``<ov_genai_image_N>`` tag is), not as
token ids. So a vision request crosses to the engine as :class:`VisionGenerateJob`: the chat template's text (applied
in the HTTP process, with the tags in it) and each image's encoded bytes, checked there already. The engine process
decodes them (:func:`image_tensor`) as it adds the request; :class:`~ovserve.engine.llm_core.LLMCore` runs it beside
the text requests, in the same steps.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ovserve.engine.protocol import SamplingParams

#: The files of a VLM folder as ``optimum-cli export openvino --task image-text-to-text`` writes it.
IR_LANGUAGE_MODEL = "openvino_language_model.xml"
IR_VISION_EMBEDDINGS = "openvino_vision_embeddings_model.xml"


def image_tag(index: int) -> str:
    """GenAI's model-independent tag for the request's image ``index`` (0-based) in a prompt."""
    return f"<ov_genai_image_{index}>"


@dataclass(frozen=True, slots=True)
class VisionGenerateJob:
    """A request with images to generate for: the prompt's text (chat template applied, an :func:`image_tag` where
    each image goes), each image's encoded file (PNG, JPEG, ...) with the longest side it may keep (``None``: as it
    is), and the settings."""

    prompt: str
    images: tuple[bytes, ...]
    max_sides: tuple[int | None, ...]
    params: SamplingParams


def decode_rgb(data: bytes, max_side: int | None = None) -> Any:
    """An encoded image as RGB pixels (PIL), shrunk (keeping its shape) so its longer side is at most ``max_side``."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGB")
    if max_side is not None and max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    return image


def image_tensor(data: bytes, max_side: int | None = None) -> Any:
    """An encoded image as GenAI's VLMs take it: an ``ov.Tensor`` of uint8 RGB pixels, shaped (1, height, width, 3)."""
    import numpy
    import openvino

    pixels = numpy.asarray(decode_rgb(data, max_side), dtype=numpy.uint8)
    return openvino.Tensor(numpy.ascontiguousarray(pixels[numpy.newaxis]))


def add_vision_request(pipeline: Any, request_id: int, job: VisionGenerateJob) -> Any:
    """Add ``job`` to a ContinuousBatchingPipeline loaded from a VLM folder; returns its handle. The prompt is
    the chat template's text already: GenAI must not apply the template again."""
    images = [image_tensor(data, side) for data, side in zip(job.images, job.max_sides, strict=True)]
    config = job.params.to_generation_config()
    config.apply_chat_template = False
    return pipeline.add_request(request_id, job.prompt, images, config)


def is_vision_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a VLM exported for GenAI (a language model and a vision embeddings model)."""
    return (folder / IR_LANGUAGE_MODEL).is_file() and (folder / IR_VISION_EMBEDDINGS).is_file()


def tokens_per_image(folder: Path) -> int:
    """How many prompt tokens one image takes, as far as the model's ``config.json`` says; 0 when it does not.

    GenAI does not report a request's prompt length on the continuous-batching pipeline, so ``usage.prompt_tokens``
    of a vision request is its text's tokens plus this much per image. For llava (measured against
    ``VLMPipeline``'s count, ``tests/engine/test_vision.py``) an image is its ``image_seq_length`` tokens and a
    newline. Models whose image tokens depend on the image's size (LLaVA-NeXT, Qwen2-VL, ...) have no fixed count:
    their images count as ``image_seq_length`` if the config gives one, else as nothing."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return 0
    length = config.get("image_seq_length")
    if not isinstance(length, int) or length < 0:
        return 0
    return length + 1 if config.get("model_type") == "llava" else length
