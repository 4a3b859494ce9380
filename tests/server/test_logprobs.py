"""Log-probabilities on the real model, chat and completions, unary and streamed: the chosen tokens' (from the
engine) and their best alternatives (from the scoring pass)."""

import openai
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


def test_top_logprobs_are_sorted_hold_the_greedy_token_and_join_to_the_text(f32_server):
    response = f32_server.openai().chat.completions.create(model=MODEL_NAME, messages=QUESTION, temperature=0,
                                                       max_tokens=12, logprobs=True, top_logprobs=5)
    choice = response.choices[0]
    entries = choice.logprobs.content
    assert "".join(e.token for e in entries) == choice.message.content
    for entry in entries:
        alternatives = [a.logprob for a in entry.top_logprobs]
        assert len(alternatives) == 5 and alternatives == sorted(alternatives, reverse=True)
        assert all(lp <= 0 for lp in alternatives)
        assert all(bytes(a.bytes).decode(errors="replace") == a.token for a in entry.top_logprobs)
        # greedy: the chosen token is among the best, with the same number (one computation gives both)
        (same,) = [a for a in entry.top_logprobs if a.token == entry.token]
        assert same.logprob == entry.logprob
        assert entry.logprob >= alternatives[-1]


def test_the_alternatives_are_scored_at_the_engine_s_own_tokens(f32_server):
    """The scoring pass follows the answer token by token: each chosen token's log-probability, from the scorer, is
    the engine's own. Both compute in f32 on this server, so they differ by summation order only, on every CPU."""
    client = f32_server.openai()
    engine = client.chat.completions.create(model=MODEL_NAME, messages=QUESTION, temperature=0, max_tokens=12,
                                            logprobs=True).choices[0].logprobs.content
    scored = client.chat.completions.create(model=MODEL_NAME, messages=QUESTION, temperature=0, max_tokens=12,
                                            logprobs=True, top_logprobs=1).choices[0].logprobs.content
    assert [e.token for e in scored] == [e.token for e in engine]
    assert [e.logprob for e in scored] == pytest.approx([e.logprob for e in engine], abs=0.05)
    assert len({round(e.logprob, 2) for e in engine}) > 3  # the numbers differ from token to token: no placeholder


def test_streamed_top_logprobs_of_n_choices_are_the_unary_ones(server):
    client = server.openai()
    fields = {"model": MODEL_NAME, "messages": QUESTION, "temperature": 0, "max_tokens": 10, "logprobs": True,
              "top_logprobs": 3, "n": 2}
    unary = {c.index: c.logprobs.content for c in client.chat.completions.create(**fields).choices}
    streamed: dict[int, list] = {0: [], 1: []}
    for chunk in client.chat.completions.create(**fields, stream=True):
        for choice in chunk.choices:
            streamed[choice.index].extend(choice.logprobs.content if choice.logprobs else [])
    for index, entries in streamed.items():  # the same two sequences in the same steps: the same numbers
        assert [e.token for e in entries] == [e.token for e in unary[index]]
        assert [[a.token for a in e.top_logprobs] for e in entries] == [[a.token for a in e.top_logprobs]
                                                                        for e in unary[index]]
        assert [e.logprob for e in entries] == pytest.approx([e.logprob for e in unary[index]], abs=1e-4)
        assert all(len(e.top_logprobs) == 3 for e in entries)


def test_completion_logprobs_n_lists_the_n_best_around_each_token(f32_server):
    response = f32_server.openai().completions.create(model=MODEL_NAME, prompt="The capital of France is",
                                                  temperature=0, max_tokens=6, logprobs=3,
                                                  extra_body={"ignore_eos": True})
    logprobs = response.choices[0].logprobs
    assert "".join(logprobs.tokens) == response.choices[0].text
    for token, logprob, top in zip(logprobs.tokens, logprobs.token_logprobs, logprobs.top_logprobs, strict=True):
        assert len(top) == 3 and top[token] == logprob  # greedy: the chosen token is one of the 3 best
        assert max(top.values()) - logprob < 0.05  # the engine chose the best, as the scorer (both f32) sees it


def test_top_logprobs_need_logprobs_true(server):
    with pytest.raises(openai.BadRequestError) as caught:
        server.openai().chat.completions.create(model=MODEL_NAME, messages=QUESTION, max_tokens=2, top_logprobs=2)
    assert caught.value.body["param"] == "top_logprobs"


def test_many_choices_with_alternatives_do_not_wait_for_each_other(server):
    response = server.openai().chat.completions.create(model=MODEL_NAME, messages=QUESTION, temperature=1.0, seed=3,
                                                       max_tokens=4, logprobs=True, top_logprobs=1, n=6, timeout=120)
    assert sorted(c.index for c in response.choices) == list(range(6))
    assert all(len(e.top_logprobs) == 1 for c in response.choices for e in c.logprobs.content)
