"""Sampling fields beyond OpenAI's (sent at the top level, as extra_body does) and the refusals, end to end."""

import openai
import pytest

from ovserve.engine.settings import find_model_files
from ovserve.engine.tokenizer import TextTokenizer
from tests.conftest import MODEL_NAME

pytestmark = pytest.mark.slow

STORY = [{"role": "user", "content": "Tell me a story about a dragon."}]
PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def client(server):
    return server.openai()


@pytest.fixture(scope="module")
def tokenizer(default_model):
    return TextTokenizer.load(find_model_files(default_model))


def chat(client, **fields):
    return client.chat.completions.create(model=MODEL_NAME, messages=STORY, max_tokens=24, **fields)


def test_top_k_1_samples_only_the_most_likely_token(client):
    greedy = chat(client, temperature=0).choices[0].message.content
    assert chat(client, temperature=1.5, seed=1, extra_body={"top_k": 1}).choices[0].message.content == greedy
    sampled = {chat(client, temperature=1.5, seed=seed, extra_body={"min_p": 0.5}).choices[0].message.content
               for seed in (1, 2)}
    assert all(sampled)


def repeated_words(text: str) -> int:
    words = text.lower().split()
    return len(words) - len(set(words))


def test_penalties_make_a_repetitive_greedy_answer_repeat_less(client):
    def answer(**fields):
        return client.completions.create(model=MODEL_NAME, prompt="I like cats. I like dogs. I like birds. I like",
                                         temperature=0, max_tokens=24, **fields).choices[0].text

    plain = answer()
    assert repeated_words(plain) >= 5, plain
    for fields in ({"frequency_penalty": 2.0}, {"presence_penalty": 2.0}, {"extra_body": {"repetition_penalty": 2.0}}):
        penalized = answer(**fields)
        assert repeated_words(penalized) < repeated_words(plain), (fields, penalized)


def test_min_tokens_keeps_a_short_answer_going(client):
    short = client.chat.completions.create(model=MODEL_NAME, messages=[{"role": "user", "content": "Say yes."}],
                                           temperature=0, max_tokens=60)
    assert short.choices[0].finish_reason == "stop" and short.usage.completion_tokens < 30
    longer = client.chat.completions.create(model=MODEL_NAME, messages=[{"role": "user", "content": "Say yes."}],
                                            temperature=0, max_tokens=60, extra_body={"min_tokens": 30})
    assert longer.usage.completion_tokens >= 30


def test_stop_token_ids_end_the_answer(client, tokenizer):
    full = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=16, temperature=0).choices[0].text
    assert "." in full, full
    (dot,) = tokenizer.encode(".", add_special_tokens=False).tolist()
    cut = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=16, temperature=0,
                                    extra_body={"stop_token_ids": [dot]})
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].text in (full[:full.index(".")], full[:full.index(".") + 1])


def test_include_stop_str_in_output_keeps_the_stop_string(client):
    full = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=8, temperature=0).choices[0].text
    kept = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=8, temperature=0, stop=["aris"],
                                     extra_body={"include_stop_str_in_output": True})
    assert kept.choices[0].text == full[:full.index("aris") + len("aris")]
    assert kept.choices[0].finish_reason == "stop"
    # a stop string that begins a token (" " of " Paris"): the engine drops such a token, the detokenizer does not
    space = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=8, temperature=0, stop=[" "],
                                      extra_body={"include_stop_str_in_output": True}).choices[0]
    assert " " in full and (space.text, space.finish_reason) == (full[:full.index(" ") + 1], "stop")


@pytest.mark.parametrize("prefix", ["/v3", "/v1"])
@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"functions": [{"name": "get_weather", "parameters": {"type": "object"}}]}, "functions"),
        ({"top_logprobs": 2}, "top_logprobs"),  # without logprobs: true
        ({"logit_bias": {"1": 5}}, "logit_bias"),
        ({"reasoning_effort": "low"}, "reasoning_effort"),
    ],
)
def test_what_is_not_supported_yet_is_refused_naming_the_field(server, prefix, fields, param):
    with pytest.raises(openai.BadRequestError) as caught:
        server.openai(prefix).chat.completions.create(model=MODEL_NAME, messages=STORY, max_tokens=4, **fields)
    assert caught.value.status_code == 400 and caught.value.body["param"] == param


def test_a_token_id_outside_the_vocabulary_is_refused(client, tokenizer):
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=MODEL_NAME, prompt=[1, tokenizer.vocab_size], max_tokens=4)
    assert caught.value.body["param"] == "prompt" and str(tokenizer.vocab_size) in caught.value.body["message"]
    assert client.completions.create(model=MODEL_NAME, prompt=[1, tokenizer.vocab_size - 1], max_tokens=2).usage


def test_unknown_and_ignored_fields_are_accepted(client):
    response = chat(client, temperature=0, user="someone", extra_body={"some_future_field": {"x": 1}})
    assert response.choices[0].message.content
