"""OpenAI's image requests (``POST /v3/images/generations``, JSON, and ``/v3/images/edits``, a multipart form),
declared, with OVMS's extensions under their own names.

:meth:`ImageRequest.parse` validates the fields: a 400 naming the field for a value it does not take. What depends
on the served model (the sizes, ``n`` and step limits of its graph, whether it edits) is checked by the image node
against its :class:`~ovserve.calculators.images.model.ImageModel`.

OpenAI's fields that ovserve does not honour are refused by name where they would change the answer
(:data:`REFUSED_VALUES`) and accepted where the value asked for is what ovserve does anyway: ``quality`` ``auto``
or ``standard``, ``background`` ``auto`` or ``opaque``, ``input_fidelity`` ``low``, ``moderation`` (no moderation
is done: images come as the model draws them), ``user``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ovserve.errors import RequestError
from ovserve.request_body import parse_body

#: The longest prompt taken, in characters (OpenAI's limit for its GPT image models; CLIP reads 77 tokens anyway).
MAX_PROMPT_CHARS = 32_000
#: OpenAI's bound on ``n``; the graph's ``max_num_images_per_prompt`` may set a lower one.
MAX_N = 10
#: Fields accepted because they change nothing here (logged once when sent).
IGNORED_BY_DESIGN = frozenset({"user", "moderation"})
#: OpenAI's fields, with the values that ovserve does anyway (others are refused by name), and why.
REFUSED_VALUES: dict[str, tuple[frozenset[str], str]] = {
    "quality": (frozenset({"auto", "standard"}), "the served models have no quality setting; set "
                "num_inference_steps (more steps, more detail) instead"),
    "background": (frozenset({"auto", "opaque"}), "the served models draw opaque images only"),
    "style": (frozenset(), "the served models have no style setting (DALL-E 3's vivid or natural); describe the "
              "style in the prompt"),
    "input_fidelity": (frozenset({"low"}), "the served models have no fidelity setting; set strength (lower keeps "
                       "more of the image) instead"),
}

OutputFormat = Literal["png", "jpeg", "webp"]
Text = Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]


def parse_size(value: str, field: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` as (width, height); a ValueError naming ``field`` otherwise."""
    width, separator, height = value.strip().lower().partition("x")
    if not separator or not width.isdigit() or not height.isdigit() or int(width) < 1 or int(height) < 1:
        raise ValueError(f"{field} must be WIDTHxHEIGHT in pixels, such as 512x512 (got {value!r})")
    return int(width), int(height)


class ImageRequest(BaseModel):
    """What both endpoints take. Unknown fields are accepted and logged once, as unknown chat fields are."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    prompt: Text
    n: Annotated[int, Field(ge=1, le=MAX_N)] | None = None
    size: str | None = None
    output_format: OutputFormat = "png"
    output_compression: Annotated[int, Field(ge=0, le=100)] | None = None
    response_format: Literal["b64_json", "url"] | None = None
    stream: bool = False
    partial_images: Annotated[int, Field(ge=0, le=3)] | None = None
    quality: str | None = None
    background: str | None = None
    style: str | None = None
    input_fidelity: str | None = None
    # OVMS's extensions
    prompt_2: Text | None = None
    prompt_3: Text | None = None
    negative_prompt: Text | None = None
    negative_prompt_2: Text | None = None
    negative_prompt_3: Text | None = None
    num_images_per_prompt: Annotated[int, Field(ge=1, le=MAX_N)] | None = None
    num_inference_steps: Annotated[int, Field(ge=1)] | None = None
    guidance_scale: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None = None
    strength: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
    rng_seed: Annotated[int, Field(ge=0, lt=2**63)] | None = None
    max_sequence_length: Annotated[int, Field(ge=1, le=4096)] | None = None

    @field_validator("prompt")
    @classmethod
    def _something_to_draw(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the prompt is empty: describe the image")
        return value

    @field_validator("size")
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        if value is not None and value != "auto":
            parse_size(value, "size")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> ImageRequest:
        for name, (taken, why) in REFUSED_VALUES.items():
            value = getattr(self, name)
            if value is not None and value not in taken:
                raise RequestError(f"{name} '{value}' cannot be honoured: {why}"
                                   + (f" (taken: {', '.join(sorted(taken))})" if taken else "; leave it out"),
                                   param=name, code="unsupported_value")
        if self.n is not None and self.num_images_per_prompt is not None and self.n != self.num_images_per_prompt:
            raise RequestError(f"n ({self.n}) and num_images_per_prompt ({self.num_images_per_prompt}) disagree: "
                               f"set one", param="num_images_per_prompt", code="invalid_value")
        if self.output_compression is not None and self.output_format == "png":
            raise RequestError("output_compression is for jpeg and webp; png is lossless: leave it out or set "
                               "output_format", param="output_compression", code="invalid_value")
        if self.stream and self.count > 1:
            raise RequestError("a streamed request makes one image (OpenAI's image events carry no image index): "
                               "set n to 1, or do not stream", param="n", code="invalid_value")
        return self

    @property
    def count(self) -> int:
        """How many images are asked for."""
        return self.n or self.num_images_per_prompt or 1

    @property
    def size_asked(self) -> tuple[int, int] | None:
        """(width, height) asked for; ``None`` for ``auto`` or none."""
        return None if self.size in (None, "auto") else parse_size(self.size, "size")

    @classmethod
    def parse(cls, data: Any) -> ImageRequest:
        """The body (or the form's text fields) validated; a 400 naming the field otherwise."""
        if not isinstance(data, dict):
            raise RequestError("the request body must be a JSON object", code="invalid_json")
        return parse_body(cls, data)


class ImageGenerationRequest(ImageRequest):
    """``POST /v3/images/generations``: images from a prompt. ``strength`` is for edits and is refused here."""

    @model_validator(mode="after")
    def _no_strength(self) -> ImageGenerationRequest:
        if self.strength is not None:
            raise RequestError("strength is for /images/edits (how much of the image to change); a generation "
                               "starts from noise: leave it out", param="strength", code="invalid_value")
        return self


class ImageEditForm(ImageRequest):
    """``POST /v3/images/edits``: the form's text fields (its ``image`` and ``mask`` parts are read by the node)."""
