"""Completions' echo on the real model: the prompt comes back in front of the answer, or alone."""

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


def test_echo_with_logprobs_scores_the_prompt_first_token_null(server):
    # The openai client's own types say every token_logprobs entry is a float, but OpenAI and vLLM send null for
    # the prompt's first token, which nothing predicts: read this answer without strict validation.
    client = server.openai(strict=False)
    response = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=3, temperature=0, echo=True,
                                         logprobs=2)
    logprobs = response.choices[0].logprobs
    prompt_tokens = response.usage.prompt_tokens
    assert "".join(logprobs.tokens[:prompt_tokens]) == PROMPT
    assert "".join(logprobs.tokens) == response.choices[0].text
    assert logprobs.token_logprobs[0] is None and logprobs.top_logprobs[0] is None
    assert all(p <= 0 for p in logprobs.token_logprobs[1:])
    assert all(token in top and len(top) <= 3 for token, top in zip(logprobs.tokens[1:], logprobs.top_logprobs[1:],
                                                                         strict=True))
    assert logprobs.text_offset == [sum(len(t) for t in logprobs.tokens[:i]) for i in range(len(logprobs.tokens))]


def test_echo_with_logprobs_and_max_tokens_0_scores_a_prompt_as_lm_eval_does(server):
    client = server.openai(strict=False)

    def score(text: str) -> list[float]:
        response = client.completions.create(model=MODEL_NAME, prompt=text, max_tokens=0, echo=True, logprobs=0)
        assert response.choices[0].text == text and response.usage.completion_tokens == 0
        return response.choices[0].logprobs.token_logprobs

    likely, unlikely = score(PROMPT + " Paris"), score(PROMPT + " spoon")
    assert likely[:-1] == pytest.approx(unlikely[:-1], abs=1e-3)  # the same prompt, scored the same way
    assert likely[-1] > unlikely[-1] + 2
