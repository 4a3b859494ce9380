"""Reasoning: <think>…</think> → reasoning_content, on answers as Qwen3 and DeepSeek-R1 write them."""

import json

import pytest

from ovserve.calculators.llm.reasoning import ReasoningParserCalculator, choose_reasoning
from ovserve.calculators.llm.response import OpenAIResponseCalculator
from ovserve.calculators.llm.types import ModelParsers, TextDelta
from ovserve.testing import run_calculator
from tests.calculators.llm.fakes import chat_request, completion_request, planned

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
    out = await run_calculator(ReasoningParserCalculator, {"PROMPT": [planned(request, parsers)], "TEXT": texts})
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


OPENS_NOTHING = ModelParsers(reasoning_parser="qwen3", reasoning_opened_by_template=False)


async def test_an_answer_without_think_streams_at_once_when_the_template_did_not_open_the_tag():
    parsed = await parse(chat_request(), "Four, without thinking, in several pieces.", parsers=OPENS_NOTHING)
    assert sum(bool(d.text) for d in parsed if d.finish_reason is None) > 5  # not held to the end
    assert "".join(d.text for d in parsed) == "Four, without thinking, in several pieces."
    think = await parse(chat_request(), RECORDED[0][0], parsers=OPENS_NOTHING)  # one that opens it is still split
    assert ("".join(d.reasoning for d in think), "".join(d.text for d in think)) == RECORDED[0][1:]


async def test_asking_for_thinking_holds_an_answer_without_think_in_case_the_template_opened_it():
    parsed = await parse(chat_request(chat_template_kwargs={"enable_thinking": True}), RECORDED[1][0],
                         parsers=OPENS_NOTHING)
    assert ("".join(d.reasoning for d in parsed), "".join(d.text for d in parsed)) == RECORDED[1][1:]


class TemplateOf:
    def __init__(self, generation_prompt):
        self.generation_prompt = generation_prompt

    def apply_chat_template(self, messages, add_generation_prompt=True):
        if self.generation_prompt is None:
            raise ValueError("this template needs a system message")
        return "<|user|>Hi" + self.generation_prompt


@pytest.mark.parametrize(("generation_prompt", "opened"), [
    ("<|assistant|>\n<think>\n", True),  # DeepSeek-R1's
    ("<|im_start|>assistant\n", False),  # Qwen3's: the model writes <think> itself
    (None, True),  # cannot tell: the cautious reading
])
def test_whether_the_template_opens_the_tag_is_read_from_its_generation_prompt(generation_prompt, opened):
    from ovserve.calculators.llm.reasoning import opens_reasoning

    assert opens_reasoning(TemplateOf(generation_prompt)) is opened
