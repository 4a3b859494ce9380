"""LangChain's ChatOpenAI streaming from the server (its unary tools and structured output are in
tests/server/test_langchain.py): text, usage and finish_reason; tool-call chunks; async."""

import pytest
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from tests.clients import refuse_the_network
from tests.conftest import MODEL_NAME

pytestmark = pytest.mark.slow


class GetWeather(BaseModel):
    """Get the current weather in a city."""

    city: str = Field(description="the city, e.g. Paris")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    refuse_the_network(monkeypatch)


@pytest.fixture
def chat(server):
    return ChatOpenAI(model=MODEL_NAME, base_url=f"{server.base_url}/v3", api_key="unused", temperature=0,
                      max_tokens=16, max_retries=0, timeout=60, stream_usage=True)


def test_stream_chunks_add_up_to_the_invoked_answer(chat):
    answer = chat.invoke("Say hello to me.")
    chunks = list(chat.stream("Say hello to me."))
    assert len(chunks) > 1
    whole = sum(chunks[1:], chunks[0])
    assert whole.content.strip() and whole.content == answer.content
    assert whole.response_metadata["finish_reason"] == answer.response_metadata["finish_reason"]
    assert whole.response_metadata["finish_reason"] in ("stop", "length")
    assert 0 < whole.usage_metadata["output_tokens"] <= 16
    assert whole.usage_metadata == answer.usage_metadata


def test_streamed_tool_call_chunks_add_up_to_the_forced_call(chat):
    chunks = list(chat.bind_tools([GetWeather], tool_choice="GetWeather").stream("What is the weather in Paris?",
                                                                                  max_tokens=60))
    whole = sum(chunks[1:], chunks[0])
    (call,) = whole.tool_calls
    assert call["name"] == "GetWeather" and call["id"].startswith("call_")
    GetWeather.model_validate(call["args"])
    assert whole.response_metadata["finish_reason"] == "tool_calls" and not whole.invalid_tool_calls


async def test_astream_gives_text(chat):
    chunks = [chunk async for chunk in chat.astream("Say hello to me.")]
    whole = sum(chunks[1:], chunks[0])
    assert whole.content.strip() and whole.response_metadata["finish_reason"] in ("stop", "length")
