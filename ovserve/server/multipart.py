"""Multipart form bodies (``multipart/form-data``), as the audio and image edit endpoints take them: text fields
and one file (two for an image edit: the image and its mask).

:func:`parse_form` is called by the server with a request body it has read whole (the guard caps its size). It runs
python-multipart's streaming parser over the bytes, in a worker thread (a 25 MB upload takes tens of milliseconds to
split), and holds every part to its limits while it parses: at most one file, a bounded number of text fields, each
of bounded size. Anything else is a 400 that says what was wrong.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from ovserve.errors import RequestError

#: The most text fields a form may have (OpenAI's audio forms have a dozen).
MAX_FIELDS = 64
#: The longest text field, in bytes (a transcription prompt is at most 10,000 characters).
MAX_FIELD_BYTES = 64 * 1024
#: The most files a form may hold by default.
MAX_FILES = 1


@dataclass
class Form:
    """A parsed form: its text fields in the order sent, as ``(name, value)`` pairs (a name may come more than once),
    and its files by field name, as ``(filename, content type, bytes)``."""

    fields: list[tuple[str, str]] = field(default_factory=list)
    files: dict[str, tuple[str, str, bytes]] = field(default_factory=dict)


def form_error(problem: str, param: str | None = None) -> RequestError:
    """A 400 for a body that is no form these endpoints take."""
    return RequestError(f"Invalid multipart form: {problem}. Send multipart/form-data with the file(s) (the audio in "
                        f"'file'; an image edit's 'image' and 'mask') and the other fields as text, as OpenAI's "
                        f"clients do.", param=param, code="invalid_request_body")


async def parse_form(body: bytes, headers: Mapping[str, str], max_files: int = MAX_FILES) -> Form:
    """The form in ``body`` (its ``content-type`` header gives the boundary), with at most ``max_files`` files; a 400
    for anything else."""
    content_type, options = parse_options_header(headers.get("content-type", ""))
    if content_type != b"multipart/form-data":
        shown = content_type.decode(errors="replace") or "none"
        raise form_error(f"the content type is {shown}, not multipart/form-data")
    boundary = options.get(b"boundary")
    if not boundary:
        raise form_error("the content type names no boundary")
    if len(body) < 64 * 1024:
        return _parse(body, boundary, max_files)
    return await asyncio.to_thread(_parse, body, boundary, max_files)


class _Parts:
    """Collects the parts python-multipart reports, holding each to its limits as it grows."""

    def __init__(self, max_files: int = MAX_FILES) -> None:
        self.max_files = max_files
        self.form = Form()
        self.header_name = b""
        self.header_value = b""
        self.headers: dict[bytes, bytes] = {}
        self.data: list[bytes] = []
        self.size = 0
        self.name = ""
        self.filename: str | None = None

    def begin(self) -> None:
        self.headers, self.data, self.size = {}, [], 0

    def header_end(self) -> None:
        self.headers[self.header_name.lower()] = self.header_value
        self.header_name = self.header_value = b""

    def headers_done(self) -> None:
        disposition, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        if disposition != b"form-data" or b"name" not in options:
            raise form_error("a part has no Content-Disposition: form-data with a name")
        self.name = options[b"name"].decode(errors="replace")
        filename = options.get(b"filename")
        self.filename = filename.decode(errors="replace") if filename is not None else None
        if self.filename is not None and len(self.form.files) >= self.max_files:
            raise form_error(f"it holds more than {self.max_files} file(s); send one audio file, as 'file' (an image "
                             f"edit: one 'image' and at most one 'mask')", self.name)
        if self.filename is not None and self.name in self.form.files:
            raise form_error(f"it holds the file field '{self.name}' twice; send one", self.name)
        if self.filename is None and len(self.form.fields) >= MAX_FIELDS:
            raise form_error(f"it has more than {MAX_FIELDS} text fields")

    def add(self, data: bytes, start: int, end: int) -> None:
        self.size += end - start
        if self.filename is None and self.size > MAX_FIELD_BYTES:
            raise form_error(f"the field '{self.name}' is longer than {MAX_FIELD_BYTES // 1024} KiB", self.name)
        self.data.append(data[start:end])

    def end(self) -> None:
        value = b"".join(self.data)
        self.data = []
        if self.filename is None:
            try:
                self.form.fields.append((self.name, value.decode()))
            except UnicodeDecodeError:
                raise form_error(f"the field '{self.name}' is not UTF-8 text", self.name) from None
        else:
            content_type = self.headers.get(b"content-type", b"application/octet-stream").decode(errors="replace")
            self.form.files[self.name] = (self.filename, content_type, value)


def _parse(body: bytes, boundary: bytes, max_files: int = MAX_FILES) -> Form:
    parts = _Parts(max_files)

    def header_field(data: bytes, start: int, end: int) -> None:
        parts.header_name += data[start:end]

    def header_value(data: bytes, start: int, end: int) -> None:
        parts.header_value += data[start:end]

    parser = MultipartParser(boundary, {
        "on_part_begin": parts.begin, "on_part_data": parts.add, "on_part_end": parts.end,
        "on_header_field": header_field, "on_header_value": header_value, "on_header_end": parts.header_end,
        "on_headers_finished": parts.headers_done,
    })
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as error:
        raise form_error(f"it cannot be read ({error})") from None
    if parser.state.name != "END":
        raise form_error("it ends before its closing boundary")
    return parts.form
