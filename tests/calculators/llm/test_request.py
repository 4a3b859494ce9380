"""Deserialize: the URL picks the schema; invalid bodies become OpenAI errors naming the field."""

import pytest

from ovserve.calculators.llm.request import OpenAIRequestCalculator
from ovserve.errors import RequestError
from ovserve.framework.errors import CalculatorError
from ovserve.payloads import HttpRequestPayload
from ovserve.testing import run_calculator


def payload(uri, json):
    return HttpRequestPayload(uri=uri, body=b"", json=json, model="served-name")


async def deserialize(uri, json):
    return (await run_calculator(OpenAIRequestCalculator, {"HTTP_REQUEST_PAYLOAD": [payload(uri, json)]}))["REQUEST"]


async def test_chat_requests_get_a_chat_id_and_the_served_name():
    (request,) = await deserialize("/v3/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert request.kind == "chat" and request.id.startswith("chatcmpl-") and request.model == "served-name"
    assert request.created > 0 and request.body.messages[0].text() == "x"


async def test_completion_requests_are_recognised_by_their_url():
    (request,) = await deserialize("/v1/completions", {"model": "m", "prompt": "x", "unknown_field": 1})
    assert request.kind == "completion" and request.id.startswith("cmpl-")


async def refused(uri, json) -> RequestError:
    with pytest.raises(CalculatorError) as caught:
        await deserialize(uri, json)
    assert isinstance(caught.value.cause, RequestError)
    return caught.value.cause


async def test_a_missing_field_is_named():
    error = await refused("/v3/chat/completions", {"model": "m"})
    assert (error.status, error.param, error.code) == (400, "messages", "missing_required_parameter")


async def test_a_value_out_of_range_is_named_with_the_value():
    error = await refused("/v3/chat/completions",
                          {"model": "m", "messages": [{"role": "user", "content": "x"}], "top_p": 1.5})
    assert error.param == "top_p" and "less than or equal to 1" in error.message and "1.5" in error.message


async def test_a_prompt_of_the_wrong_type_lists_what_is_accepted():
    error = await refused("/v3/completions", {"model": "m", "prompt": 5})
    assert error.param == "prompt" and "expected str or list[str] or list[int]" in error.message


async def test_an_unknown_url_is_a_404():
    error = await refused("/v3/embeddings", {"model": "m"})
    assert error.status == 404
