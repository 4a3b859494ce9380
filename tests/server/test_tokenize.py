"""/v3/tokenize and /v3/detokenize on the real model: vLLM's shapes, OVMS's text form, and counts that agree
with what the engine is given for the same prompt or messages."""

import httpx
import pytest

from tests.conftest import MODEL_NAME
from tests.server.test_bad_input import assert_openai_error

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def post(server, path: str, **body) -> httpx.Response:
    return httpx.post(f"{server.base_url}{path}", json={"model": MODEL_NAME, **body}, timeout=30)


def test_a_prompt_tokenizes_and_detokenizes_back_to_itself(server):
    text = "The quick brown fox jumps over the lazy dog. Ünïcödé ✓"
    answer = post(server, "/v3/tokenize", prompt=text).json()
    assert answer["count"] == len(answer["tokens"]) > 5
    assert answer["max_model_len"] == 8192
    assert all(isinstance(token, int) for token in answer["tokens"])
    assert post(server, "/v3/detokenize", tokens=answer["tokens"]).json() == {"prompt": text}


def test_a_text_longer_than_the_context_is_tokenized_whole_not_cut_at_the_maximum(server):
    text = " ".join(f"word{i}" for i in range(6000))  # several tokens a word: far past the 8192 maximum
    answer = post(server, "/v3/tokenize", prompt=text).json()
    assert answer["count"] == len(answer["tokens"]) > answer["max_model_len"]
    assert post(server, "/v3/detokenize", tokens=answer["tokens"]).json() == {"prompt": text}


def test_the_count_is_what_a_completion_of_the_same_prompt_uses(server):
    prompt = "Once upon a time, in a land far away,"
    count = post(server, "/v3/tokenize", prompt=prompt).json()["count"]
    usage = server.openai().completions.create(model=MODEL_NAME, prompt=prompt, max_tokens=1).usage
    assert usage.prompt_tokens == count


def test_messages_are_counted_through_the_chat_template_as_a_chat_completion_is(server):
    tokenized = post(server, "/v3/tokenize", messages=QUESTION).json()
    usage = server.openai().chat.completions.create(model=MODEL_NAME, messages=QUESTION, max_tokens=1).usage
    assert usage.prompt_tokens == tokenized["count"]
    without_prompt = post(server, "/v3/tokenize", messages=QUESTION, add_generation_prompt=False).json()
    assert without_prompt["count"] < tokenized["count"]  # the assistant's opening is left out
    text = post(server, "/v3/detokenize", tokens=tokenized["tokens"]).json()["prompt"]
    assert "What is the capital of France?" in text and "<|im_start|>assistant" in text


def test_ovms_text_lists_and_token_strings(server):
    answer = post(server, "/v1/tokenize", text=["hello world", "Paris"], return_token_strs=True).json()
    assert [len(tokens) for tokens in answer["tokens"]] == answer["count"]
    assert ["".join(strs) for strs in answer["token_strs"]] == ["hello world", "Paris"]
    single = post(server, "/v3/tokenize", text="hello world").json()
    assert single["tokens"] == answer["tokens"][0]


@pytest.mark.parametrize(("path", "body", "param"), [
    ("/v3/tokenize", {"prompt": "a", "messages": QUESTION}, None),
    ("/v3/tokenize", {}, None),
    ("/v3/tokenize", {"prompt": "a", "max_length": 4}, "max_length"),
    ("/v3/tokenize", {"prompt": "a", "continue_final_message": True}, "continue_final_message"),
    ("/v3/tokenize", {"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
    ("/v3/detokenize", {"tokens": [1, 10**9]}, "tokens"),
    ("/v3/detokenize", {"tokens": "hello"}, "tokens"),
])
def test_bad_requests_get_a_400_naming_the_field(server, path, body, param):
    response = post(server, path, **body)
    assert_openai_error(response, 400)
    if param is not None:
        assert response.json()["error"]["param"] == param


def test_an_unknown_model_is_a_404(server):
    response = httpx.post(f"{server.base_url}/v3/tokenize", json={"model": "nope", "prompt": "a"}, timeout=10)
    assert_openai_error(response, 404, "model", "does not exist")
