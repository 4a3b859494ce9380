"""Completions with every OpenAI prompt shape on the real model, lm-evaluation-harness's loglikelihood request
answered and parsed as lm-eval's ``local-completions`` model does, and vLLM's tokenizer endpoints at the root."""

import json
import math
from operator import itemgetter

import httpx
import pytest

from tests.conftest import MODEL_NAME
from tests.server.test_bad_input import assert_openai_error

pytestmark = pytest.mark.slow

FRANCE = "The capital of France is"
STORY = "Once upon a time"


def post(server, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{server.base_url}{path}", json=body, timeout=120)


def complete(server, **body) -> dict:
    response = post(server, "/v3/completions", {"model": MODEL_NAME, **body})
    assert response.status_code == 200, response.text
    return response.json()


def encode(server, text: str) -> list[int]:
    """Token ids as lm-eval's remote tokenizer asks for them: the server's root, no model, no special tokens."""
    response = post(server, "/tokenize", {"prompt": text, "add_special_tokens": False})
    assert response.status_code == 200, response.text
    return response.json()["tokens"]


def test_each_prompt_shape_with_one_prompt_is_the_same_request(server):
    ids = encode(server, FRANCE)
    answers = [complete(server, prompt=prompt, max_tokens=4, temperature=0)
               for prompt in (FRANCE, [FRANCE], ids, [ids])]
    assert all(len(a["choices"]) == 1 and a["choices"][0]["index"] == 0 for a in answers)
    assert len({a["choices"][0]["text"] for a in answers}) == 1  # one prompt, computed alike each time
    assert all(a["usage"] == answers[0]["usage"] for a in answers) and answers[0]["usage"]["prompt_tokens"] == len(ids)


@pytest.mark.parametrize("as_ids", [False, True], ids=["strings", "token arrays"])
def test_several_prompts_give_n_choices_each_numbered_prompt_by_prompt_and_usage_sums_them(server, as_ids):
    texts = [FRANCE, STORY]
    prompts = [encode(server, t) for t in texts] if as_ids else texts
    answer = complete(server, prompt=prompts, n=2, max_tokens=5, temperature=1.0, seed=4, echo=True, ignore_eos=True)
    choices = answer["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2, 3]
    assert [c["text"].startswith(FRANCE) for c in choices] == [True, True, False, False]
    assert [c["text"].startswith(STORY) for c in choices] == [False, False, True, True]
    assert all(len(c["text"]) > len(texts[c["index"] // 2]) for c in choices)  # something after each echo
    prompt_tokens = sum(len(encode(server, t)) for t in texts)
    assert answer["usage"] == {"prompt_tokens": prompt_tokens, "completion_tokens": 4 * 5,
                               "total_tokens": prompt_tokens + 20}


def test_a_stream_of_two_prompts_numbers_each_choice_and_ends_once_with_one_usage_chunk(server):
    body = {"model": MODEL_NAME, "prompt": [FRANCE, STORY], "max_tokens": 6, "temperature": 0, "echo": True,
            "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True}
    with httpx.stream("POST", f"{server.base_url}/v3/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert events.count("[DONE]") == 1 and events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    texts, finishes = {}, {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            texts[choice["index"]] = texts.get(choice["index"], "") + choice["text"]
            if choice["finish_reason"]:
                finishes[choice["index"]] = choice["finish_reason"]
    assert finishes == {0: "length", 1: "length"}
    assert texts[0].startswith(FRANCE) and texts[1].startswith(STORY)
    usage = [chunk["usage"] for chunk in chunks if chunk.get("usage")]
    assert len(usage) == 1 and chunks[-1]["choices"] == [] and usage[0]["completion_tokens"] == 12
    assert usage[0]["prompt_tokens"] == len(encode(server, FRANCE)) + len(encode(server, STORY))


@pytest.mark.parametrize(("prompt", "fields", "param", "words"), [
    (["hello"] * 129, {}, "prompt", "at most 128 items"),
    ([[1, 2]] * 129, {}, "prompt", "at most 128 items"),
    ([], {}, "prompt", "at least 1 item"),
    (["hello", ""], {}, "prompt", "must not be empty"),
    (["hello", "hello " * 9000], {"max_tokens": 5}, "prompt[1]", "maximum context length is 8192 tokens"),
    ([[1, 2], [1, 10**9]], {}, "prompt[1]", "outside this model's vocabulary"),
    (["hello"] * 21, {}, "prompt", "above this server's limit of 163840 per request"),
    (["hello"] * 65, {"n": 2, "max_tokens": 1}, "prompt", "130 answers (2 each)"),
])
def test_prompts_out_of_bounds_get_a_400_naming_prompt_and_the_server_keeps_serving(server, prompt, fields, param,
                                                                                      words):
    response = post(server, "/v3/completions", {"model": MODEL_NAME, "prompt": prompt, **fields})
    assert_openai_error(response, 400, param, words)
    assert complete(server, prompt=["hi", "there"], max_tokens=1)["usage"]["completion_tokens"] == 2


def lm_eval_parse_logprobs(outputs: dict, ctxlens: list[int]) -> list[tuple[float, bool]]:
    """lm-evaluation-harness's ``LocalCompletionsAPI.parse_logprobs``, as it reads an answer: choices sorted by
    index; the continuation's log-probabilities (the prompt from ``ctxlen`` on, less the one generated token);
    greedy when each is the best of its ``top_logprobs``."""
    results = []
    for choice, ctxlen in zip(sorted(outputs["choices"], key=itemgetter("index")), ctxlens, strict=False):
        assert ctxlen > 0
        token_logprobs = choice["logprobs"]["token_logprobs"][ctxlen:-1]
        top_logprobs = choice["logprobs"]["top_logprobs"][ctxlen:-1]
        is_greedy = all(token == max(top.values()) for token, top in zip(token_logprobs, top_logprobs, strict=False))
        results.append((sum(token_logprobs), is_greedy))
    return results


def lm_eval_request(prompts: list[list[int]]) -> dict:
    """lm-eval's loglikelihood payload (``_create_payload`` with ``generate=False``), tokenized requests."""
    return {"model": MODEL_NAME, "prompt": prompts, "temperature": 0, "max_tokens": 1, "logprobs": 1, "seed": 1234,
            "echo": True}


def test_lm_evals_tokenized_loglikelihood_batch_is_answered_and_parsed_as_lm_eval_does(server):
    info = httpx.get(f"{server.base_url}/tokenizer_info", timeout=30).json()  # what lm-eval checks first
    assert isinstance(info["eos_token"], str) and encode(server, info["eos_token"]) == [info["eos_token_id"]]
    context = encode(server, FRANCE)
    requests = [(context, encode(server, " Paris")), (context, encode(server, " spoon"))]
    inputs = [ctx + continuation for ctx, continuation in requests]
    ctxlens = [len(ctx) for ctx, _ in requests]
    batched = lm_eval_parse_logprobs(complete(server, **lm_eval_request(inputs)), ctxlens)
    assert len(batched) == 2
    assert all(math.isfinite(total) and total < 0 and isinstance(greedy, bool) for total, greedy in batched)
    assert batched[0][0] > batched[1][0] + 2  # " Paris" is far likelier than " spoon"
    # The prompt's log-probabilities come from the scoring pass, one prompt at a time in f32, in the same shapes
    # however many prompts the request holds: each prompt scores as it does alone.
    for (total, greedy), tokens, ctxlen in zip(batched, inputs, ctxlens, strict=True):
        ((alone, alone_greedy),) = lm_eval_parse_logprobs(complete(server, **lm_eval_request([tokens])), [ctxlen])
        assert total == pytest.approx(alone, abs=1e-3) and greedy == alone_greedy


def test_a_request_without_a_model_goes_to_the_only_one_served(server):
    response = post(server, "/v3/completions", {"prompt": [FRANCE, STORY], "max_tokens": 1})
    assert response.status_code == 200 and response.json()["model"] == MODEL_NAME
    assert post(server, "/v1/completions", {"model": None, "prompt": FRANCE, "max_tokens": 1}).status_code == 200
    assert_openai_error(post(server, "/v3/completions", {"model": "nope", "prompt": FRANCE}), 404, "model")


def test_vllms_tokenizer_endpoints_at_the_root(server):
    info = httpx.get(f"{server.base_url}/tokenizer_info", timeout=30).json()
    assert info["model_max_length"] == 8192 and info["vocab_size"] == 49152
    assert info["chat_template"] and info["bos_token"] and isinstance(info["bos_token_id"], int)
    tokens = encode(server, "Hello there")
    assert post(server, "/detokenize", {"tokens": tokens}).json() == {"prompt": "Hello there"}
    assert post(server, "/v3/tokenize", {"model": MODEL_NAME, "prompt": "Hello there",
                                         "add_special_tokens": False}).json()["tokens"] == tokens
    assert httpx.get(f"{server.base_url}/tokenizer_info", params={"model": "nope"}, timeout=30).status_code == 404
