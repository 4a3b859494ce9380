"""The packets that cross between the HTTP server and a graph (OVMS's ``HttpPayload`` convention).

A servable graph reads ``HTTP_REQUEST_PAYLOAD`` and writes ``HTTP_RESPONSE_PAYLOAD``. These are plain
data: the framework and calculators stay free of HTTP code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

REQUEST_TAG = "HTTP_REQUEST_PAYLOAD"
RESPONSE_TAG = "HTTP_RESPONSE_PAYLOAD"
#: The tags OVMS's embeddings and rerank graphs use for the same packets.
OVMS_REQUEST_TAG = "REQUEST_PAYLOAD"
OVMS_RESPONSE_TAG = "RESPONSE_PAYLOAD"


@dataclass(frozen=True, slots=True)
class HttpRequestPayload:
    """One HTTP request, as the graph sees it."""

    #: The request path, e.g. ``/v3/chat/completions``.
    uri: str
    #: The raw body.
    body: bytes
    #: The body parsed as JSON (the server parses it once, to route by ``model``); for a multipart form (the audio
    #: endpoints), its text fields, a field sent more than once as a list.
    json: Any
    #: The name the model is served under (what responses report as ``model``).
    model: str
    method: str = "POST"
    headers: Mapping[str, str] = field(default_factory=dict)
    #: The server's id for this request (for logs).
    request_id: str = ""
    #: A multipart form's files by field name: (filename, content type, bytes).
    files: Mapping[str, tuple[str, str, bytes]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HttpResponsePayload:
    """A response, or one piece of a streamed response.

    A graph that streams sends several: the first sets ``status`` and ``content_type``
    (``text/event-stream``), and the one with ``last=True`` ends the response.
    """

    body: bytes
    status: int = 200
    content_type: str = "application/json"
    last: bool = True
    #: Facts for the server's one-line request log (``prompt_tokens``, ``completion_tokens``, ...).
    log: Mapping[str, Any] | None = None
    #: On an answer's last payload, when the request asked for it to be kept (``store``): the whole answer as one
    #: JSON-ready object, the ``chat.completion`` or ``response`` a unary request gets, streamed or not. The
    #: server's stores keep this; nothing reads the sent bytes back.
    answer: Mapping[str, Any] | None = None
