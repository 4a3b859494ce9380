"""Multipart form bodies (``ovserve.server.multipart``): fields and one file, held to their limits while parsed."""

import asyncio

import httpx
import pytest

from ovserve.errors import RequestError
from ovserve.server.multipart import MAX_FIELDS, parse_form


def request(data=None, files=None) -> tuple[bytes, httpx.Headers]:
    built = httpx.Request("POST", "http://server/v3/audio/transcriptions", data=data, files=files)
    return built.read(), built.headers


def parsed(body: bytes, headers) -> object:
    return asyncio.run(parse_form(body, headers))


def refused(body: bytes, headers) -> RequestError:
    with pytest.raises(RequestError) as caught:
        parsed(body, headers)
    assert caught.value.status == 400 and caught.value.code == "invalid_request_body"
    return caught.value


def test_fields_in_order_and_the_file_with_its_name_and_type():
    body, headers = request({"model": "w", "timestamp_granularities[]": ["word", "segment"]},
                            {"file": ("a.wav", b"RIFF....", "audio/wav")})
    form = parsed(body, headers)
    assert form.fields == [("model", "w"), ("timestamp_granularities[]", "word"),
                           ("timestamp_granularities[]", "segment")]
    assert form.files == {"file": ("a.wav", "audio/wav", b"RIFF....")}


def test_a_large_file_is_parsed_off_the_event_loop_whole():
    audio = bytes(range(256)) * 20_000
    body, headers = request({"model": "w"}, {"file": ("a.wav", audio)})
    assert parsed(body, headers).files["file"][2] == audio


def test_what_is_no_form_of_these_endpoints_is_refused_saying_why():
    body, headers = request({"model": "w"})
    assert "not multipart/form-data" in refused(body, headers).message
    body, headers = request({"model": "w"}, {"file": ("a.wav", b"RIFF")})
    assert "closing boundary" in refused(body[:-10], headers).message
    assert "cannot be read" in refused(b"garbage", headers).message
    assert "no boundary" in refused(b"", {"content-type": "multipart/form-data"}).message


def test_limits_hold_while_parsing():
    body, headers = request(None, [("file", ("a.wav", b"1")), ("other", ("b.wav", b"2"))])
    assert refused(body, headers).param == "other"
    body, headers = request({f"field{i}": "x" for i in range(MAX_FIELDS + 1)}, {"file": ("a.wav", b"1")})
    assert "more than 64 text fields" in refused(body, headers).message
    body, headers = request({"prompt": "x" * (64 * 1024 + 1)}, {"file": ("a.wav", b"1")})
    assert refused(body, headers).param == "prompt"
    body, headers = request(None, {"file": ("a.wav", b"1")})
    latin = body.replace(b'name="file"; filename="a.wav"', b'name="note"')
    assert parsed(latin, headers).fields == [("note", "1")]
    bad_text = body.replace(b'name="file"; filename="a.wav"', b'name="note"').replace(b"\r\n1\r\n", b"\r\n\xff\r\n")
    assert refused(bad_text, headers).param == "note"
