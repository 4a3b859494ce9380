"""The image node: an OpenAI image generation request (JSON) or edit form in, the images (or their events) out."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any

from ovserve import Calculator, CalculatorContext, Input, Output, SideInput
from ovserve.calculators.images.inputs import read_picture
from ovserve.calculators.images.model import ImageModel
from ovserve.calculators.images.schema import IGNORED_BY_DESIGN, ImageEditForm, ImageGenerationRequest, ImageRequest
from ovserve.calculators.llm.request_fields import log_ignored
from ovserve.endpoints import not_served
from ovserve.engine.image_kind import (
    NO_PIPELINE,
    EditJob,
    GenerateJob,
    ImageJob,
    ImagePartial,
    ImageResult,
    InpaintJob,
)
from ovserve.engine.process import EngineError
from ovserve.errors import RequestError
from ovserve.payloads import HttpRequestPayload, HttpResponsePayload

#: What the node answers, by the end of the path.
GENERATIONS, EDITS = "/images/generations", "/images/edits"
SSE = "text/event-stream"
#: GenAI's default ``strength`` for image to image (inpainting's is 1).
IMAGE2IMAGE_STRENGTH = 0.8
#: The seeds drawn for requests that name no ``rng_seed`` (GenAI's own default, 42, would draw the same image).
SEED_RANGE = 2**31


class ImageGenerationCalculator(Calculator):
    """``/images/generations`` and ``/images/edits``: validates the request against the model's limits (sizes, ``n``,
    steps, the uploads), runs the job in the image engine, and answers with the images in base64, or, with
    ``stream``, OpenAI's ``partial_image`` events then a ``completed`` one. Everything is checked before the engine
    sees the request; a client that goes away stops its job at the next denoising step."""

    HTTP_REQUEST_PAYLOAD = Input(HttpRequestPayload, doc="the HTTP request: JSON, or an edit's multipart form")
    IMAGES = SideInput(ImageModel)
    HTTP_RESPONSE_PAYLOAD = Output(HttpResponsePayload)

    async def process(self, ctx: CalculatorContext) -> None:
        payload: HttpRequestPayload = ctx.value(self.HTTP_REQUEST_PAYLOAD)
        model: ImageModel = ctx.side["IMAGES"]
        if not payload.uri.endswith((GENERATIONS, EDITS)):
            raise not_served(payload.uri, payload.model, "an image generation model", (GENERATIONS, EDITS))
        edit = payload.uri.endswith(EDITS)
        request = (ImageEditForm if edit else ImageGenerationRequest).parse(payload.json)
        log_ignored(request, IGNORED_BY_DESIGN)
        settings = checked_settings(request, model)
        uploads = edit_uploads(payload) if edit else None
        model.hold()  # counted from here: the decoded uploads are held until the engine is done with them
        try:
            job = await build_job(request, model, settings, uploads)
            if request.stream:
                async for event in stream(model, job, "image_edit" if edit else "image_generation"):
                    await ctx.send(self.HTTP_RESPONSE_PAYLOAD, event)
                return
            result: ImageResult = await model.engine.call(job)
        except EngineError as error:
            if str(error).startswith(NO_PIPELINE):  # an edit the model cannot make: the request's, not the server's
                raise RequestError(f"{error}: it cannot make this edit", param="mask" if uploads and uploads[1]
                                   else "image", code="unsupported_model") from None
            raise
        finally:
            model.release()
        body = {"created": int(time.time()), "data": [{"b64_json": base64.b64encode(image).decode()}
                                                     for image in result.images],
                "output_format": job.output_format, "size": f"{result.width}x{result.height}",
                "usage": usage(result)}
        ctx.send(self.HTTP_RESPONSE_PAYLOAD, HttpResponsePayload(json.dumps(body).encode(),
                                                                 content_type="application/json",
                                                                 log={"prompt_tokens": result.input_tokens,
                                                                      "images": len(result.images),
                                                                      "steps": result.steps}))


def usage(result: ImageResult) -> dict[str, Any]:
    """OpenAI's image usage: the prompt's text tokens (as the model's first tokenizer reads it); no image tokens in
    (an edit's image is encoded by the VAE, not tokenized) and none out (a diffusion model makes no tokens)."""
    return {"input_tokens": result.input_tokens, "output_tokens": 0, "total_tokens": result.input_tokens,
            "input_tokens_details": {"text_tokens": result.input_tokens, "image_tokens": 0}}


def checked_settings(request: ImageRequest, model: ImageModel) -> dict[str, Any]:
    """GenAI's generation settings for the request, once it is within the model's limits (a 400 naming the field
    otherwise). The size is left for :func:`build_job` (an edit's default is its image's)."""
    if request.response_format == "url":
        raise RequestError("response_format 'url' needs an image store, which this server has none of: leave it "
                           "out (or set 'b64_json') for the images in the response", param="response_format",
                           code="unsupported_value")
    field = "n" if request.n is not None else "num_images_per_prompt"
    if request.count > model.max_images:
        raise RequestError(f"{field} {request.count} is over this model's limit of {model.max_images} images a "
                           f"request (max_num_images_per_prompt)", param=field, code="invalid_value")
    if model.static_images is not None and request.count != model.static_images:
        raise RequestError(f"{field} {request.count}: this model is reshaped to {model.static_images} images a "
                           f"request", param=field, code="invalid_value")
    steps = request.num_inference_steps or model.default_steps
    if steps > model.max_steps:
        raise RequestError(f"num_inference_steps {steps} is over this model's limit of {model.max_steps} "
                           f"(max_num_inference_steps)", param="num_inference_steps", code="invalid_value")
    guidance = request.guidance_scale
    if model.static_guidance is not None and guidance is not None and guidance != model.static_guidance:
        raise RequestError(f"guidance_scale {guidance:g}: this model is reshaped for {model.static_guidance:g} only",
                           param="guidance_scale", code="invalid_value")
    if request.negative_prompt is not None and guidance is not None and guidance <= 1:
        raise RequestError(f"a negative_prompt needs guidance_scale above 1 (got {guidance:g}): the pipeline "
                           f"ignores it otherwise", param="negative_prompt", code="invalid_value")
    for name, encoders in (("prompt_2", 2), ("negative_prompt_2", 2), ("prompt_3", 3), ("negative_prompt_3", 3)):
        if getattr(request, name) is not None and model.text_encoders < encoders:
            raise RequestError(f"{name} is for models with {encoders} or more text encoders (SDXL, SD3, FLUX); this "
                               f"one has {model.text_encoders}", param=name, code="unsupported_parameter")
    if request.max_sequence_length is not None and not model.t5:
        raise RequestError("max_sequence_length bounds a T5 text encoder (SD3, FLUX); this model has none",
                           param="max_sequence_length", code="unsupported_parameter")
    settings: dict[str, Any] = {"num_inference_steps": steps}
    for name in ("guidance_scale", "strength", "max_sequence_length", "prompt_2", "prompt_3", "negative_prompt",
                 "negative_prompt_2", "negative_prompt_3"):
        if getattr(request, name) is not None:
            settings[name] = getattr(request, name)
    return settings


def edit_uploads(payload: HttpRequestPayload) -> tuple[bytes, bytes | None]:
    """The form's ``image`` (OpenAI's clients send a list of one as ``image[]``) and optional ``mask`` parts; a 400
    naming ``image`` when there is none."""
    image = payload.files.get("image") or payload.files.get("image[]")
    if image is None:
        sent = ", ".join(payload.files) or "none"
        raise RequestError(f"the form has no 'image' part with the image to edit (files sent: {sent})", param="image",
                           code="missing_required_parameter")
    mask = payload.files.get("mask")
    return image[2], None if mask is None else mask[2]


async def build_job(request: ImageRequest, model: ImageModel, settings: dict[str, Any],
                    uploads: tuple[bytes, bytes | None] | None) -> ImageJob:
    """The engine job: the uploads decoded (in a thread) and checked, the size chosen and checked."""
    asked = request.size_asked or model.default_resolution
    image = mask = None
    if uploads is not None:
        image = await asyncio.to_thread(read_picture, uploads[0], "image", model.picture_limits)
        if uploads[1] is not None:
            mask = await asyncio.to_thread(read_picture, uploads[1], "mask", model.picture_limits, True)
            if (mask.width, mask.height) != (image.width, image.height):
                raise RequestError(f"the mask is {mask.width}x{mask.height} and the image {image.width}x"
                                   f"{image.height}: they must be the same size", param="mask",
                                   code="invalid_value")
        if request.size_asked is None:
            asked = (image.width, image.height)
        check_strength(request, settings["num_inference_steps"], mask is not None)
    if asked is not None:
        field = "size" if request.size_asked is not None or uploads is None else "image"
        model.check_size(*asked, field)
        settings = {**settings, "width": asked[0], "height": asked[1]}
    common: dict[str, Any] = {
        "prompt": request.prompt, "settings": tuple(settings.items()), "n": request.count,
        "partial_images": (request.partial_images or 0) if request.stream else 0,
        "output_format": request.output_format, "output_compression": request.output_compression,
        "rng_seed": request.rng_seed if request.rng_seed is not None else random.randrange(SEED_RANGE)}
    if image is None:
        return GenerateJob(**common)
    if mask is None:
        return EditJob(**common, image=image)
    return InpaintJob(**common, image=image, mask=mask)


def check_strength(request: ImageRequest, steps: int, inpainting: bool) -> None:
    """An edit runs int(steps x strength) steps, and GenAI fails one that would run none: a 400 naming the field."""
    strength = request.strength if request.strength is not None else 1.0 if inpainting else IMAGE2IMAGE_STRENGTH
    if 0 < steps * strength < 1:
        field = "strength" if request.strength is not None else "num_inference_steps"
        raise RequestError(f"{steps} step(s) at strength {strength:g} run none: an edit runs int(num_inference_steps "
                           f"x strength) steps; raise {field}", param=field, code="invalid_value")


async def stream(model: ImageModel, job: ImageJob, prefix: str) -> AsyncIterator[HttpResponsePayload]:
    """OpenAI's image events: a ``<prefix>.partial_image`` per preview the engine sends, then ``<prefix>.completed``
    with the image (a streamed request makes one)."""
    created = int(time.time())
    common = {"created_at": created, "quality": "auto", "background": "opaque", "output_format": job.output_format}
    async for piece in model.engine.submit(job).partials():
        if isinstance(piece, ImagePartial):
            for image in piece.images:
                yield HttpResponsePayload(event(f"{prefix}.partial_image", {
                    **common, "size": f"{piece.width}x{piece.height}", "b64_json": base64.b64encode(image).decode(),
                    "partial_image_index": piece.index}), content_type=SSE, last=False)
        elif isinstance(piece, ImageResult):
            body = b"".join(event(f"{prefix}.completed", {
                **common, "size": f"{piece.width}x{piece.height}", "b64_json": base64.b64encode(image).decode(),
                "usage": usage(piece)}) for image in piece.images)
            yield HttpResponsePayload(body, content_type=SSE, log={"prompt_tokens": piece.input_tokens,
                                                                   "images": len(piece.images),
                                                                   "steps": piece.steps})
            return


def event(kind: str, fields: dict[str, Any]) -> bytes:
    """One server-sent event, named as OpenAI names it, with its JSON."""
    return (f"event: {kind}\ndata: ".encode() + json.dumps({"type": kind, **fields}, separators=(",", ":")).encode()
            + b"\n\n")


