"""An edit's uploaded ``image`` and ``mask``, decoded with Pillow and checked before the engine sees them.

:func:`read_picture` is called by the image node in a worker thread. It reads the header first, so that an image
of too many pixels (a decompression bomb) is refused before its pixels are decoded, then decodes it to RGB. A mask
follows OpenAI's rule when it has transparency (fully transparent pixels are the ones to repaint) and OVMS's
otherwise (white pixels are the ones to repaint); either way it reaches the engine as white on black.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from ovserve.engine.image_kind import Picture
from ovserve.errors import RequestError

#: The image formats taken (Pillow's names).
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")
#: The largest upload taken by default, in bytes (OpenAI's limit for its GPT image models).
DEFAULT_MAX_IMAGE_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class PictureLimits:
    """The bounds on an uploaded image: its bytes and its pixels (width x height)."""

    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    max_pixels: int = 4096 * 4096


def read_picture(data: bytes, field: str, limits: PictureLimits, mask: bool = False) -> Picture:
    """The upload as RGB pixels (a mask: white where to repaint); a 400 naming ``field`` when it is too big, not an
    image, of another format, or corrupt."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > limits.max_bytes:
        raise RequestError(f"the {field} is {len(data):,} bytes; the limit is {limits.max_bytes:,}", status=413,
                           param=field, code="file_too_large")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
            width, height = image.size
            if width * height > limits.max_pixels:
                raise RequestError(f"the {field} is {width}x{height}, {width * height:,} pixels; the limit is "
                                   f"{limits.max_pixels:,}", param=field, code="image_too_large")
            image.load()
            rgb = repaint_area(image) if mask else image.convert("RGB")
    except RequestError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as error:
        raise RequestError(f"the {field} cannot be read as an image ({' '.join(str(error).split())[:200]}); send "
                           f"a PNG, JPEG or WebP file", param=field, code="invalid_image") from None
    return Picture(rgb.tobytes(), width, height)


def repaint_area(image: object) -> object:
    """A mask as white (repaint) on black (keep): transparent pixels are white when the mask has transparency
    (OpenAI's rule), else its light pixels are (OVMS's and diffusers' rule)."""
    from PIL import Image

    assert isinstance(image, Image.Image)
    if "A" in image.getbands() or "transparency" in image.info:
        alpha = image.convert("RGBA").getchannel("A")
        if alpha.getextrema()[0] < 255:
            return alpha.point(lambda value: 255 if value == 0 else 0).convert("RGB")
    return image.convert("L").point(lambda value: 255 if value >= 128 else 0).convert("RGB")
