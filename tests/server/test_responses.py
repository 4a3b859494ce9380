"""How a begun Responses API stream ends when its request fails (``ovserve/server/responses.py``)."""

import json

from ovserve.errors import RequestError
from ovserve.server.responses import ResponsesEvents

FAILURE = RequestError("the engine stopped", status=503, code="model_not_ready")


def event(body: bytes) -> dict:
    (kind, data) = body.decode().strip().split("\n")
    assert kind.startswith("event: ")
    return {"event": kind[7:], **json.loads(data.removeprefix("data: "))}


def test_before_response_created_a_failure_is_an_error_event():
    events = ResponsesEvents()
    events.saw(b": keep-alive\n\n")
    failed = event(events.failure(FAILURE))
    assert failed == {"event": "error", "type": "error", "sequence_number": 0, "code": "model_not_ready",
                      "message": "the engine stopped", "param": None}


def test_after_response_created_a_failure_is_response_failed_with_the_next_sequence_number():
    events = ResponsesEvents()
    created = {"id": "resp_1", "object": "response", "status": "in_progress", "output": []}
    events.saw(b'event: response.created\ndata: {"type": "response.created", "sequence_number": 0, "response": '
               + json.dumps(created).encode() + b'}\n\nevent: response.in_progress\ndata: {"type": '
               b'"response.in_progress", "sequence_number": 1}\n\n')
    events.saw(b'event: response.output_text.delta\ndata: {"type": "response.output_text.delta", "sequence_number": 2}'
               b"\n\n")
    failed = event(events.failure(FAILURE))
    assert (failed["event"], failed["type"], failed["sequence_number"]) == ("response.failed", "response.failed", 3)
    assert failed["response"] == {**created, "status": "failed",
                                  "error": {"code": "model_not_ready", "message": "the engine stopped"}}
