"""n choices on the real model: unary and streamed, chat and completions; usage counts every choice."""

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
