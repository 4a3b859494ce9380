"""LangChain's ChatOpenAI against the server: tools bound with a forced choice, and structured output."""

import pytest
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from tests.conftest import MODEL_NAME

pytestmark = pytest.mark.slow


class GetWeather(BaseModel):
    """Get the current weather in a city."""

    city: str = Field(description="the city, e.g. Paris")


class Capital(BaseModel):
    """A country's capital."""

    country: str
    capital: str


@pytest.fixture
def chat(server):
    return ChatOpenAI(model=MODEL_NAME, base_url=f"{server.base_url}/v3", api_key="unused", temperature=0,
                      max_tokens=60, max_retries=0)


def test_bind_tools_with_a_forced_choice_returns_that_tool_call(chat):
    answer = chat.bind_tools([GetWeather], tool_choice="GetWeather").invoke("What is the weather in Paris?")
    (call,) = answer.tool_calls
    assert call["name"] == "GetWeather" and call["id"].startswith("call_")
    GetWeather.model_validate(call["args"])


def test_with_structured_output_json_schema_gives_the_model(chat):
    answer = chat.with_structured_output(Capital, method="json_schema").invoke("What is the capital of France?")
    assert isinstance(answer, Capital) and answer.capital
