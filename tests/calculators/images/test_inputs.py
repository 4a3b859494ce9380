"""An edit's uploads as the image node reads them: RGB pixels, masks by OpenAI's rule or OVMS's, and refusals."""

import io

import numpy as np
import pytest
from PIL import Image

from ovserve.calculators.images.inputs import PictureLimits, read_picture
from ovserve.errors import RequestError


def encoded(image: Image.Image, image_format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format)
    return buffer.getvalue()


def pixels(picture) -> np.ndarray:
    return np.frombuffer(picture.rgb, dtype=np.uint8).reshape(picture.height, picture.width, 3)


def test_an_image_becomes_rgb_pixels_of_its_size():
    picture = read_picture(encoded(Image.new("RGBA", (5, 3), (10, 20, 30, 255))), "image", PictureLimits())
    assert (picture.width, picture.height) == (5, 3)
    assert pixels(picture)[0, 0].tolist() == [10, 20, 30]


def test_a_mask_with_transparency_repaints_its_transparent_pixels():
    mask = Image.new("RGBA", (4, 2), (255, 255, 255, 255))
    mask.putpixel((1, 0), (255, 255, 255, 0))
    area = pixels(read_picture(encoded(mask), "mask", PictureLimits(), mask=True))
    assert area[0, 1].tolist() == [255, 255, 255]  # transparent: repainted, though the pixel is white
    assert area[0, 0].tolist() == [0, 0, 0] and area[1, 3].tolist() == [0, 0, 0]


def test_an_opaque_mask_repaints_its_light_pixels():
    mask = Image.new("L", (4, 2), 0)
    mask.putpixel((2, 1), 250)
    area = pixels(read_picture(encoded(mask), "mask", PictureLimits(), mask=True))
    assert area[1, 2].tolist() == [255, 255, 255] and area.sum() == 3 * 255
    opaque = Image.new("RGBA", (4, 2), (255, 255, 255, 255))  # an alpha channel, all opaque: light pixels count
    assert pixels(read_picture(encoded(opaque), "mask", PictureLimits(), mask=True)).min() == 255


@pytest.mark.parametrize(("data", "limits", "status", "words"), [
    (b"GIF89a not really", PictureLimits(), 400, "PNG, JPEG or WebP"),
    (encoded(Image.new("RGB", (8, 8)))[:40], PictureLimits(), 400, "cannot be read"),
    (encoded(Image.new("RGB", (8, 8))), PictureLimits(max_bytes=10), 413, "the limit is 10"),
    (encoded(Image.new("RGB", (100, 100))), PictureLimits(max_pixels=99 * 100), 400, "100x100"),
])
def test_what_cannot_be_taken_is_refused_naming_the_field(data, limits, status, words):
    with pytest.raises(RequestError) as refused:
        read_picture(data, "mask", limits)
    assert (refused.value.status, refused.value.param) == (status, "mask") and words in refused.value.message
