"""n choices on the real model: unary and streamed, chat and completions; usage counts every choice."""

import openai
import pytest

from tests.conftest import MODEL_NAME

pytestmark = pytest.mark.slow

STORY = [{"role": "user", "content": "Tell me a story."}]


def test_three_streamed_choices_are_each_complete_and_usage_counts_them_all(server):
    chunks = list(server.openai().chat.completions.create(
        model=MODEL_NAME, messages=STORY, n=3, temperature=1.0, seed=5, max_tokens=12, stream=True,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True}))
    texts, finishes, roles = {}, {}, []
    for chunk in chunks:
        for choice in chunk.choices:
            if choice.delta.role:
                roles.append(choice.index)
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    assert sorted(roles) == [0, 1, 2] and finishes == {0: "length", 1: "length", 2: "length"}
    assert all(texts[i] for i in range(3)) and len(set(texts.values())) > 1  # sampled apart
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3 * 12
    assert chunks[-1].usage.prompt_tokens == chunks[-1].usage.total_tokens - 36


def test_n_in_one_unary_answer_for_chat_and_completions(server):
    client = server.openai()
    chat = client.chat.completions.create(model=MODEL_NAME, messages=STORY, n=2, temperature=0, max_tokens=8,
                                          extra_body={"ignore_eos": True})
    assert [c.index for c in chat.choices] == [0, 1]
    assert all(c.message.content and c.finish_reason == "length" for c in chat.choices)
    assert chat.usage.completion_tokens == 16
    completion = client.completions.create(model=MODEL_NAME, prompt="Once upon a time", n=2, best_of=2,
                                           temperature=0.9, seed=3, max_tokens=6, extra_body={"ignore_eos": True})
    assert [c.index for c in completion.choices] == [0, 1] and completion.usage.completion_tokens == 12


def test_best_of_returns_n_answers_best_first_and_cannot_stream(server):
    client = server.openai()
    fields = {"model": MODEL_NAME, "prompt": "Once upon a time", "max_tokens": 8, "temperature": 1.0, "seed": 9}
    answer = client.completions.create(n=2, best_of=5, logprobs=0, **fields)
    assert [c.index for c in answer.choices] == [0, 1]
    means = [sum(c.logprobs.token_logprobs) / len(c.logprobs.token_logprobs) for c in answer.choices]
    assert means[0] >= means[1]
    assert answer.usage.completion_tokens == sum(len(c.logprobs.tokens) for c in answer.choices)
    for fields_, param in (({"best_of": 3, "stream": True}, "best_of"), ({"best_of": 1, "n": 2}, "best_of"),
                           ({"best_of": 21}, "best_of"), ({"n": 21}, "n")):
        with pytest.raises(openai.BadRequestError) as caught:
            client.completions.create(**{**fields, **fields_})
        assert caught.value.body["param"] == param
