"""The official openai client against a real server on the default model, streaming and not."""

import json

import httpx
import pytest

from tests.conftest import MODEL_NAME

pytestmark = pytest.mark.slow

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def client(server):
    return server.openai()


def test_models_list_and_retrieve(client):
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL_NAME]
    assert models.data[0].object == "model" and models.data[0].owned_by == "ovserve"
    assert client.models.retrieve(MODEL_NAME).id == MODEL_NAME


def test_chat_completion_answers_the_question(client):
    response = client.chat.completions.create(model=MODEL_NAME, messages=QUESTION, temperature=0)
    assert response.id.startswith("chatcmpl-")
    assert response.object == "chat.completion"
    assert response.model == MODEL_NAME
    assert response.created > 0
    (choice,) = response.choices
    assert choice.message.role == "assistant"
    assert "Paris" in choice.message.content
    assert choice.finish_reason == "stop"
    usage = response.usage
    assert usage.prompt_tokens > 10 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_streaming_chat_gives_role_then_content_then_finish_then_usage(client):
    chunks = list(client.chat.completions.create(
        model=MODEL_NAME, messages=QUESTION, temperature=0, stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" and c.model == MODEL_NAME for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason is not None]
    assert len(finish) == 1 and finish[0].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert chunks.index(finish[0]) == len(chunks) - 2
    nonstream = client.chat.completions.create(model=MODEL_NAME, messages=QUESTION, temperature=0)
    assert text == nonstream.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == nonstream.usage.completion_tokens


def test_the_raw_event_stream_ends_with_done(server):
    with httpx.stream("POST", f"{server.base_url}/v3/chat/completions", timeout=60, json={
        "model": MODEL_NAME, "messages": QUESTION, "stream": True, "max_tokens": 5,
    }) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in events)
    assert events[-1] == "data: [DONE]"
    last = json.loads(events[-2][len("data: "):])
    assert last["choices"][0]["finish_reason"] == "length"
    assert "usage" not in last, "no usage unless stream_options.include_usage is set"


def test_text_completion(client):
    response = client.completions.create(model=MODEL_NAME, prompt="The capital of France is", max_tokens=8,
                                         temperature=0)
    assert response.object == "text_completion"
    assert "Paris" in response.choices[0].text
    assert response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == 8


def test_streaming_text_completion(server):
    client = server.openai(strict=False)  # its Completion type wants a finish_reason in every chunk (conftest)
    chunks = list(client.completions.create(model=MODEL_NAME, prompt="The capital of France is", max_tokens=8,
                                            temperature=0, stream=True))
    assert "Paris" in "".join(c.choices[0].text for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "length"


def test_content_as_a_list_of_text_parts(client):
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is the capital"},
                                              {"type": "text", "text": "of France?"}]}]
    response = client.chat.completions.create(model=MODEL_NAME, messages=messages, temperature=0)
    assert "Paris" in response.choices[0].message.content


def test_system_and_assistant_turns_and_max_completion_tokens(client):
    messages = [{"role": "system", "content": "You answer in one word."}, *QUESTION,
                {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And of Italy?"}]
    response = client.chat.completions.create(model=MODEL_NAME, messages=messages, temperature=0,
                                              max_completion_tokens=3)
    assert response.usage.completion_tokens <= 3


def test_stop_strings_cut_the_text_before_them(client, server):
    full = client.completions.create(model=MODEL_NAME, prompt="The capital of France is", max_tokens=8,
                                     temperature=0).choices[0].text
    assert " Paris" in full
    cut = client.completions.create(model=MODEL_NAME, prompt="The capital of France is", max_tokens=8,
                                    temperature=0, stop=["aris"])
    assert cut.choices[0].text == full[:full.index("aris")]
    assert cut.choices[0].finish_reason == "stop"
    streamed = list(server.openai(strict=False).completions.create(
        model=MODEL_NAME, prompt="The capital of France is", max_tokens=8, temperature=0, stop=["aris"], stream=True))
    assert "".join(c.choices[0].text for c in streamed) == full[:full.index("aris")]


def test_seeded_sampling_repeats(client):
    def sample():
        return client.chat.completions.create(model=MODEL_NAME, messages=QUESTION, temperature=1.0, seed=7,
                                              max_tokens=20).choices[0].message.content

    assert sample() == sample()


def test_without_sampling_fields_the_models_defaults_give_a_sensible_answer(client):
    # The README's first request, with no sampling fields. The default model's folder has the sampling
    # defaults of its model card (ovserve pull writes them); at OpenAI's temperature 1 this model
    # rambles until its 8k context is full (max_tokens only bounds how long a failure takes).
    for seed in (1, 2, 3):
        response = client.chat.completions.create(model=MODEL_NAME, messages=QUESTION, seed=seed, max_tokens=200)
        assert "Paris" in response.choices[0].message.content
        assert response.choices[0].finish_reason == "stop" and response.usage.completion_tokens < 50


def test_unseeded_sampling_differs_between_requests(client):
    # A question with one likely answer can repeat by chance; a hot, open-ended story does not.
    story = [{"role": "user", "content": "Tell me a story."}]

    def sample():
        return client.chat.completions.create(model=MODEL_NAME, messages=story, temperature=1.5,
                                              max_tokens=20).choices[0].message.content

    assert len({sample() for _ in range(3)}) > 1


def test_ignore_eos_generates_exactly_max_tokens(client):
    response = client.chat.completions.create(model=MODEL_NAME, messages=QUESTION, temperature=0, max_tokens=40,
                                              extra_body={"ignore_eos": True})
    assert response.usage.completion_tokens == 40
    assert response.choices[0].finish_reason == "length"


def test_v1_is_an_alias_of_v3(server):
    client = server.openai("/v1")
    assert client.models.list().data[0].id == MODEL_NAME
    assert "Paris" in client.chat.completions.create(model=MODEL_NAME, messages=QUESTION,
                                                     temperature=0).choices[0].message.content


def test_health_and_metrics(server):
    assert httpx.get(f"{server.base_url}/v2/health/live").status_code == 200
    assert httpx.get(f"{server.base_url}/v2/health/ready").status_code == 200
    assert httpx.get(f"{server.base_url}/v2/models/{MODEL_NAME}/ready").status_code == 200
    assert server.metric("ovserve_model_ready") == 1
    assert server.metric("ovserve_engine_ready") == 1
