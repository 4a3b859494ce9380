"""Completions' echo on the real model: the prompt comes back in front of the answer, or alone."""

import openai
import pytest

from tests.conftest import MODEL_NAME

pytestmark = pytest.mark.slow

PROMPT = "The capital of France is"


def test_echo_returns_the_prompt_then_the_completion(server):
    client = server.openai()
    plain = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=6, temperature=0)
    echoed = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=6, temperature=0, echo=True)
    assert echoed.choices[0].text == PROMPT + plain.choices[0].text
    assert echoed.usage == plain.usage
    streamed = server.openai(strict=False).completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=6,
                                                              temperature=0, echo=True, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == echoed.choices[0].text


def test_echo_with_max_tokens_0_returns_the_prompt_alone(server):
    response = server.openai().completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=0, echo=True)
    assert response.choices[0].text == PROMPT and response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == 0 and response.usage.prompt_tokens > 0


def test_echo_with_logprobs_is_refused_for_now(server):
    with pytest.raises(openai.BadRequestError) as caught:
        server.openai().completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=0, echo=True, logprobs=0)
    assert caught.value.body["param"] == "echo"
