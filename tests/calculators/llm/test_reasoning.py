"""Reasoning: <think>…</think> → reasoning_content, on answers as Qwen3 and DeepSeek-R1 write them."""

import json

import pytest

from ovserve.calculators.llm.reasoning import ReasoningParserCalculator, choose_reasoning
from ovserve.calculators.llm.response import OpenAIResponseCalculator
from ovserve.calculators.llm.types import ModelParsers, TextDelta
from ovserve.testing import run_calculator
from tests.calculators.llm.fakes import chat_request, completion_request

RECORDED = [
    ("<think>\nThe user asks for 2 + 2. That is 4.\n</think>\n\nThe answer is 4.",
     "\nThe user asks for 2 + 2. That is 4.\n", "The answer is 4."),
    ("The template opened the tag; I reason here.</think>\n\nFour.", "The template opened the tag; I reason here.",
     "Four."),
    ("<think>\n\n</think>\n\nFour.", "\n\n", "Four."),
    ("Four, without thinking.", "", "Four, without thinking."),
    ("<think>cut off in the middle of reason", "cut off in the middle of reason", ""),
]


THINKS = ModelParsers(reasoning_parser="qwen3")


async def parse(request, text, size=4, parsers=THINKS):
    pieces = [text[i:i + size] for i in range(0, len(text), size)]
    texts = [TextDelta(p, "stop" if i == len(pieces) - 1 else None, 5, i + 1) for i, p in enumerate(pieces)]
    out = await run_calculator(ReasoningParserCalculator, {"REQUEST": [request], "TEXT": texts},
                               side_packets={"PARSERS": parsers})
    return out["PARSED"]


@pytest.mark.parametrize(("text", "reasoning", "content"), RECORDED)
@pytest.mark.parametrize("size", [1, 4, 1000])
async def test_reasoning_and_content_are_split_however_the_text_arrives(text, reasoning, content, size):
    parsed = await parse(chat_request(), text, size)
    assert "".join(d.reasoning for d in parsed) == reasoning
    assert "".join(d.text for d in parsed) == content
    assert parsed[-1].finish_reason == "stop"


async def test_models_that_do_not_think_and_text_completions_pass_through():
    text = "<think>x</think>y"
    assert "".join(d.text for d in await parse(chat_request(), text, parsers=ModelParsers())) == text
    assert "".join(d.text for d in await parse(completion_request(), text)) == text


async def test_the_answer_carries_reasoning_content_unary_and_streamed():
    texts = [TextDelta("", None, 5, 3, reasoning="thinking"), TextDelta("Four.", "stop", 5, 5)]
    (payload,) = (await run_calculator(OpenAIResponseCalculator, {"REQUEST": [chat_request()], "TEXT": texts}))[
        "HTTP_RESPONSE_PAYLOAD"]
    assert json.loads(payload.body)["choices"][0]["message"] == {
        "role": "assistant", "content": "Four.", "reasoning_content": "thinking"}
    payloads = (await run_calculator(OpenAIResponseCalculator,
                                     {"REQUEST": [chat_request(stream=True)], "TEXT": texts}))["HTTP_RESPONSE_PAYLOAD"]
    body = b"".join(p.body for p in payloads).decode()
    assert '"delta":{"reasoning_content":"thinking"}' in body


def test_the_format_comes_from_the_option_or_the_template():
    assert choose_reasoning(None, "{{ '<think>' }}") == ("qwen3", None)
    assert choose_reasoning(None, "{{ messages }}") == (None, None)
    assert choose_reasoning("none", "<think>") == (None, None)
    assert choose_reasoning("gptoss", "") == (None, "gptoss")


@pytest.mark.parametrize("fields", [{"reasoning_effort": "none"}, {"chat_template_kwargs": {"enable_thinking": False}}])
async def test_with_thinking_turned_off_the_answer_streams_as_content(fields):
    parsed = await parse(chat_request(**fields), "Four, as it comes.")
    assert len(parsed) > 1 and all(not d.reasoning for d in parsed)
