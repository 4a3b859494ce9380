"""Where a chat request's images may come from and what is refused, without a server: every bad one is a
RequestError naming the field, never another exception (a 500)."""

import base64
import io

import pytest
from PIL import Image

from ovserve.calculators.llm.images import MediaPolicy, load_image, max_side
from ovserve.errors import RequestError

PARAM = "messages[0].content[0].image_url"


def encoded(format: str = "PNG", size: tuple[int, int] = (8, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buffer, format=format)
    return buffer.getvalue()


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


@pytest.fixture
def policy(tmp_path) -> MediaPolicy:
    folder = tmp_path / "allowed"
    folder.mkdir()
    (folder / "ok.png").write_bytes(encoded())
    (folder / "sub").mkdir()
    (tmp_path / "secret.png").write_bytes(encoded())
    (folder / "link.png").symlink_to(tmp_path / "secret.png")
    return MediaPolicy(local_folder=folder, domains=("*",), max_bytes=50_000, max_pixels=100 * 100)


@pytest.mark.parametrize("format", ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"])
def test_the_usual_formats_load_as_sent(policy, format):
    data = encoded(format)
    assert load_image(data_url(data, f"image/{format.lower()}"), policy, PARAM) == data


def test_an_allowed_path_loads_as_a_path_or_a_file_url(policy):
    path = policy.local_folder / "ok.png"
    assert load_image(str(path), policy, PARAM) == load_image(f"file://{path}", policy, PARAM) == path.read_bytes()


@pytest.mark.parametrize(("url", "words"), [
    ("data:image/png;base64,", "not an image"),
    ("data:image/png,rawbytes", "base64 data URL"),
    ("data:image/png;base64,@@@@", "corrupt"),
    (data_url(encoded("ICO"), "image/x-icon"), "this server takes"),
    (data_url(encoded(size=(200, 200))), "pixels"),
    (data_url(b"\0" * 60_000), "bytes"),
    ("LOCAL/../../secret.png", "outside the folder"),
    ("LOCAL/link.png", "outside the folder"),
    ("LOCAL/sub", "cannot read"),
    ("LOCAL/missing.png", "cannot read"),
    ("LOCAL/nul\0.png", "not a usable path"),
    ("http://[::1/a.png", "not a valid URL"),
    ("http://127.0.0.1:99999/a.png", "fetching"),
    ("http://127.0.0.1:9/a.png", "fetching"),
    ("gopher://example.com/a.png", "data URL"),
    ("cat.png", "data URL"),
])
def test_each_bad_image_is_a_request_error_naming_the_field(policy, url, words):
    url = url.replace("LOCAL", str(policy.local_folder))
    with pytest.raises(RequestError, match=words) as raised:
        load_image(url, policy, PARAM)
    assert raised.value.param == PARAM


def test_nothing_local_or_remote_is_taken_unless_the_operator_allows_it(policy):
    closed = MediaPolicy()
    with pytest.raises(RequestError, match="takes none"):
        load_image(str(policy.local_folder / "ok.png"), closed, PARAM)
    with pytest.raises(RequestError, match="does not fetch"):
        load_image("https://example.com/cat.png", closed, PARAM)
    with pytest.raises(RequestError, match="not one this server fetches"):
        load_image("https://example.com/cat.png", MediaPolicy(domains=("images.example.org",)), PARAM)


def test_detail_low_caps_the_longer_side_at_512():
    assert max_side("low") == 512
    assert max_side("high") is max_side("auto") is max_side(None) is None


def test_n_copies_of_the_images_are_bounded_like_one_request_with_the_most_images():
    from ovserve.calculators.llm.tokenize import check_vision_copies
    from ovserve.calculators.llm.types import VisionPrompt

    policy = MediaPolicy(max_bytes=1000, max_images=2)
    images = VisionPrompt("text", ((b"x" * 900, None), (b"x" * 900, None)), 20)
    check_vision_copies(images, 1, policy)  # one answer: the images were checked one by one already
    check_vision_copies(VisionPrompt("text", ((b"x" * 400, None),), 10), 5, policy)
    with pytest.raises(RequestError, match="3600 bytes") as raised:
        check_vision_copies(images, 2, policy)
    assert raised.value.param == "n"
