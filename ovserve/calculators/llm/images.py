"""Images of chat requests (``image_url`` content parts): where they may come from, how big they may be, and the
checks that turn every bad one into a 400 naming its field before the engine sees it.

An image comes as a data URL (``data:image/png;base64,...``), as a local path (``/srv/images/cat.png`` or
``file:///srv/images/cat.png``) inside the folder the operator allows (:attr:`MediaPolicy.local_folder`), or as an
``http(s)`` URL on a host the operator allows (:attr:`MediaPolicy.domains`; none by default: remote images are not
fetched). Each is read whole, checked to be an image PIL decodes, of at most :attr:`MediaPolicy.max_bytes` bytes
and :attr:`MediaPolicy.max_pixels` pixels, and handed on as its encoded bytes. Called in a worker thread.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import io
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ovserve.errors import RequestError

#: The longest side an image keeps with ``detail: "low"`` (OpenAI's low detail is a 512 x 512 view).
LOW_DETAIL_SIDE = 512
#: The formats taken (those PIL decodes that are photos or drawings, not documents).
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")


@dataclass(frozen=True, slots=True)
class MediaPolicy:
    """What the operator allows of a vision model's images (the LLM node's options, or the CLI's flags)."""

    #: A folder whose files (and those of its subfolders) requests may name by path; ``None``: no local paths.
    local_folder: Path | None = None
    #: Hosts whose ``http(s)`` images are fetched (``*``: any); empty: remote images are refused.
    domains: tuple[str, ...] = ()
    max_images: int = 8
    max_bytes: int = 10_000_000
    max_pixels: int = 4096 * 4096
    fetch_timeout: float = 10.0

    def allows_host(self, host: str) -> bool:
        return "*" in self.domains or host.lower() in self.domains


def max_side(detail: str | None) -> int | None:
    """The longest side an image keeps for ``detail``: ``low`` shrinks it to 512 pixels; ``high`` and ``auto``
    leave it as it is (the model's own processor resizes it as it always does)."""
    return LOW_DETAIL_SIDE if detail == "low" else None


def load_image(url: str, policy: MediaPolicy, param: str) -> bytes:
    """The encoded image ``url`` names, checked (:func:`check_image`); a :class:`RequestError` naming ``param``
    says what was wrong."""
    try:
        scheme = urllib.parse.urlsplit(url).scheme.lower()
    except ValueError as error:  # a malformed URL ("http://[::1")
        raise RequestError(f"'{param}' is not a valid URL: {error}", param=param, code="invalid_value") from None
    if scheme == "data":
        data = _data_url(url, policy, param)
    elif scheme in ("http", "https"):
        data = _fetch(url, policy, param)
    elif scheme == "file" or (not scheme and url.startswith("/")):
        data = _local_file(url, policy, param)
    else:
        raise RequestError(f"'{param}' must be a data URL (data:image/png;base64,...), an http(s) URL or a local "
                           f"path; got {url[:40]!r}", param=param, code="invalid_value")
    check_image(data, policy, param)
    return data


def _too_big(size: int, policy: MediaPolicy, param: str) -> RequestError:
    return RequestError(f"'{param}' is an image of {size} bytes, above this server's limit of {policy.max_bytes}",
                        param=param, code="invalid_value")


def _data_url(url: str, policy: MediaPolicy, param: str) -> bytes:
    header, comma, payload = url.partition(",")
    media_type = header[len("data:"):].split(";")[0].strip().lower()
    if not comma or not header.endswith(";base64"):
        raise RequestError(f"'{param}' must be a base64 data URL (data:image/png;base64,...)", param=param,
                           code="invalid_value")
    if not media_type.startswith("image/"):
        raise RequestError(f"'{param}' is a data URL of '{media_type or 'no type'}', not an image (image/png, "
                           f"image/jpeg, ...)", param=param, code="invalid_value")
    if len(payload) * 3 // 4 > policy.max_bytes + 3:
        raise _too_big(len(payload) * 3 // 4, policy, param)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"'{param}' is a data URL whose base64 data is corrupt", param=param,
                           code="invalid_value") from None
    if len(data) > policy.max_bytes:
        raise _too_big(len(data), policy, param)
    return data


def _local_file(url: str, policy: MediaPolicy, param: str) -> bytes:
    path = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path) if url.lower().startswith("file:") else url)
    if policy.local_folder is None:
        raise RequestError(f"'{param}' is a local path, and this server takes none (the operator allows a folder "
                           f"with --allowed-local-media-path)", param=param, code="invalid_value")
    folder = policy.local_folder.resolve()
    try:
        resolved = path.resolve()  # symbolic links and '..' resolved: no way out of the folder
    except (OSError, ValueError) as error:  # a NUL in the path, a loop of links
        raise RequestError(f"'{param}' is not a usable path: {error}", param=param, code="invalid_value") from None
    if folder not in resolved.parents:
        raise RequestError(f"'{param}' is outside the folder this server takes images from ({folder})",
                           param=param, code="invalid_value")
    try:
        size = resolved.stat().st_size
        if size > policy.max_bytes:
            raise _too_big(size, policy, param)
        return resolved.read_bytes()
    except OSError as error:
        raise RequestError(f"'{param}': cannot read {path}: {error.strerror or error}", param=param,
                           code="invalid_value") from None


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects on the same host only."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        if urllib.parse.urlsplit(newurl).hostname != urllib.parse.urlsplit(req.full_url).hostname:
            raise urllib.error.HTTPError(newurl, code, "redirect to another host refused", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _fetch(url: str, policy: MediaPolicy, param: str) -> bytes:
    host = urllib.parse.urlsplit(url).hostname or ""
    if not policy.domains:
        raise RequestError(f"'{param}' is a remote URL, and this server does not fetch images (the operator turns "
                           f"fetching on with --allowed-media-domains); send the image as a data URL",
                           param=param, code="invalid_value")
    if not policy.allows_host(host):
        raise RequestError(f"'{param}' is on host '{host}', not one this server fetches images from "
                           f"({', '.join(policy.domains)})", param=param, code="invalid_value")
    opener = urllib.request.build_opener(_SameHostRedirects)
    try:
        with opener.open(urllib.request.Request(url, headers={"User-Agent": "ovserve"}),
                         timeout=policy.fetch_timeout) as response:
            data = response.read(policy.max_bytes + 1)
    except urllib.error.HTTPError as error:
        raise RequestError(f"'{param}': fetching {url} failed: {error.code} {error.reason}", param=param,
                           code="invalid_value") from None
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)  # ValueError: a port out of range; HTTPException: a bad answer
        raise RequestError(f"'{param}': fetching {url} failed: {reason}", param=param, code="invalid_value") from None
    if len(data) > policy.max_bytes:
        raise _too_big(len(data), policy, param)
    return data


def check_image(data: bytes, policy: MediaPolicy, param: str) -> None:
    """Refuse what is not a whole image of an accepted format, or has more pixels than the policy allows (checked
    from the header, before anything is decoded: no decompression bomb)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in FORMATS:
                raise RequestError(f"'{param}' is a {image.format} image; this server takes {', '.join(FORMATS)}",
                                   param=param, code="invalid_value")
            width, height = image.size
            if width * height > policy.max_pixels:
                raise RequestError(f"'{param}' is an image of {width} x {height} pixels, above this server's limit "
                                   f"of {policy.max_pixels} pixels", param=param, code="invalid_value")
            image.load()
    except RequestError:
        raise
    except UnidentifiedImageError:
        raise RequestError(f"'{param}' is not an image (PIL recognises no image format in its data)", param=param,
                           code="invalid_value") from None
    except Exception as error:  # PIL's decoders fail in many ways on bad data (OSError, SyntaxError, struct.error...)
        raise RequestError(f"'{param}' is a corrupt image: {type(error).__name__}: {error}", param=param,
                           code="invalid_value") from None
