"""Log-probabilities of the chosen tokens on the real model, chat and completions, unary and streamed."""

import pytest

from tests.conftest import MODEL_NAME

pytestmark = pytest.mark.slow

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_chat_logprobs_cover_every_token_and_join_to_the_text(server):
    response = server.openai().chat.completions.create(model=MODEL_NAME, messages=QUESTION, temperature=0,
                                                       max_tokens=20, logprobs=True, top_logprobs=0)
    choice = response.choices[0]
    entries = choice.logprobs.content
    assert "".join(e.token for e in entries) == choice.message.content
    assert len(entries) in (response.usage.completion_tokens, response.usage.completion_tokens - 1)  # EOS has no text
    assert all(e.logprob <= 0 and bytes(e.bytes).decode() == e.token and e.top_logprobs == [] for e in entries)
    assert any(e.logprob < 0 for e in entries)


def test_streamed_chat_logprobs_are_the_unary_ones(server):
    client = server.openai()
    unary = client.chat.completions.create(model=MODEL_NAME, messages=QUESTION, temperature=0, max_tokens=12,
                                           logprobs=True).choices[0].logprobs.content
    chunks = client.chat.completions.create(model=MODEL_NAME, messages=QUESTION, temperature=0, max_tokens=12,
                                            logprobs=True, stream=True)
    streamed = [e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert [e.token for e in streamed] == [e.token for e in unary]
    assert [e.logprob for e in streamed] == pytest.approx([e.logprob for e in unary], abs=1e-4)


def test_completion_logprobs_in_the_legacy_shape(server):
    response = server.openai().completions.create(model=MODEL_NAME, prompt="The capital of France is",
                                                  temperature=0, max_tokens=8, logprobs=0,
                                                  extra_body={"ignore_eos": True})
    choice = response.choices[0]
    logprobs = choice.logprobs
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == len(logprobs.text_offset) == 8
    assert "".join(logprobs.tokens) == choice.text
    assert logprobs.text_offset == [sum(len(t) for t in logprobs.tokens[:i]) for i in range(8)]
    assert all(p <= 0 for p in logprobs.token_logprobs)
    assert [next(iter(top)) for top in logprobs.top_logprobs] == logprobs.tokens


def test_without_logprobs_there_are_none(server):
    response = server.openai().chat.completions.create(model=MODEL_NAME, messages=QUESTION, temperature=0,
                                                       max_tokens=4)
    assert response.choices[0].logprobs is None
