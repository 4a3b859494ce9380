"""Serialize: OpenAI's exact JSON and event-stream shapes."""

import json

from ovserve.calculators.llm.response import OpenAIResponseCalculator
from ovserve.calculators.llm.types import GenerationLimits, TextDelta, TokenLogprob, ToolCall
from ovserve.testing import run_calculator
from tests.calculators.llm.fakes import chat_request, completion_request


async def serialize(request, texts):
    out = await run_calculator(OpenAIResponseCalculator, {"REQUEST": [request], "TEXT": texts})
    return out["HTTP_RESPONSE_PAYLOAD"]


TEXTS = [TextDelta("Hello", None, 4, 1), TextDelta(" world", None, 4, 2), TextDelta("", "stop", 4, 3)]


def events(payloads):
    body = b"".join(p.body for p in payloads).decode()
    return [block.removeprefix("data: ") for block in body.split("\n\n") if block]


async def test_a_chat_completion_is_one_json_object():
    out = await run_calculator(OpenAIResponseCalculator, {"REQUEST": [chat_request()], "TEXT": TEXTS},
                               side_packets={"LIMITS": GenerationLimits(100, system_fingerprint="fp_0123456789")})
    (payload,) = out["HTTP_RESPONSE_PAYLOAD"]
    assert payload.status == 200 and payload.content_type == "application/json" and payload.last
    assert json.loads(payload.body) == {
        "id": "chatcmpl-test", "object": "chat.completion", "created": 1700000000, "model": "served-name",
        "system_fingerprint": "fp_0123456789",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello world"}, "logprobs": None,
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7},
    }


async def test_a_chat_stream_is_role_content_finish_usage_done():
    payloads = await serialize(chat_request(stream=True, stream_options={"include_usage": True}), TEXTS)
    assert all(p.content_type == "text/event-stream" for p in payloads)
    assert [p.last for p in payloads] == [False, False, True]
    *chunks, done = events(payloads)
    assert done == "[DONE]"
    chunks = [json.loads(c) for c in chunks]
    assert [c["choices"][0]["delta"] if c["choices"] else None for c in chunks] == [
        {"role": "assistant", "content": ""}, {"content": "Hello"}, {"content": " world"}, {}, None]
    assert [c["choices"][0]["finish_reason"] if c["choices"] else "-" for c in chunks] == [None, None, None, "stop", "-"]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "chatcmpl-test" for c in chunks)
    assert [c["usage"] for c in chunks[:-1]] == [None] * 4
    assert chunks[-1]["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}


async def test_a_stream_without_include_usage_has_no_usage_key():
    chunks = [json.loads(c) for c in events(await serialize(chat_request(stream=True), TEXTS))[:-1]]
    assert all("usage" not in c for c in chunks)


async def test_a_text_completion_and_its_stream():
    (payload,) = await serialize(completion_request(), TEXTS)
    body = json.loads(payload.body)
    assert body["object"] == "text_completion" and body["choices"][0]["text"] == "Hello world"
    chunks = [json.loads(c) for c in events(await serialize(completion_request(stream=True), TEXTS))[:-1]]
    assert [c["choices"][0]["text"] for c in chunks] == ["Hello", " world", ""]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_the_last_payload_carries_facts_for_the_request_log():
    payloads = await serialize(chat_request(stream=True), TEXTS)
    assert payloads[-1].log == {"id": "chatcmpl-test", "prompt_tokens": 4, "completion_tokens": 3,
                                "finish_reason": "stop"}


async def test_content_with_quotes_newlines_and_emoji_round_trips_through_the_stream():
    tricky = 'He said "hi"\n\tthen 🙂 \\ done\u2028'
    texts = [TextDelta(tricky, None, 4, 1), TextDelta("", "length", 4, 2)]
    for request in (chat_request(stream=True), completion_request(stream=True)):
        chunks = [json.loads(c) for c in events(await serialize(request, texts))[:-1]]
        shown = "".join(c["choices"][0]["delta"].get("content") or "" if "delta" in c["choices"][0]
                        else c["choices"][0]["text"] for c in chunks)
        assert shown == tricky


CHOICES = [TextDelta("a", None, 4, 1, 0), TextDelta("x", None, 4, 1, 1), TextDelta("b", "stop", 4, 2, 0),
           TextDelta("yz", "length", 4, 3, 1)]


async def test_n_choices_come_in_one_object_once_all_have_finished():
    (payload,) = await serialize(chat_request(n=2), CHOICES)
    body = json.loads(payload.body)
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in body["choices"]] == [
        (0, "ab", "stop"), (1, "xyz", "length")]
    assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}


async def test_n_streamed_choices_each_get_a_role_and_a_finish_and_usage_sums_them():
    payloads = await serialize(chat_request(n=2, stream=True, stream_options={"include_usage": True}), CHOICES)
    assert [p.last for p in payloads] == [False, False, False, True]
    *chunks, done = events(payloads)
    chunks = [json.loads(c) for c in chunks]
    roles = [c["choices"][0]["index"] for c in chunks if c["choices"] and c["choices"][0]["delta"].get("role")]
    finishes = [(c["choices"][0]["index"], c["choices"][0]["finish_reason"]) for c in chunks
                if c["choices"] and c["choices"][0]["finish_reason"]]
    assert roles == [0, 1] and finishes == [(0, "stop"), (1, "length")]
    assert chunks[-1]["usage"]["completion_tokens"] == 5 and done == "[DONE]"


LOGPROB_TEXTS = [TextDelta("Hi", None, 4, 1, 0, (TokenLogprob("Hi", -0.5, b"Hi", token_id=17),)),
                 TextDelta(" there", "stop", 4, 2, 0, (TokenLogprob(" there", -1.25, b" there", token_id=905),))]


async def test_chat_logprobs_list_each_token_with_its_bytes():
    (payload,) = await serialize(chat_request(logprobs=True), LOGPROB_TEXTS)
    (choice,) = json.loads(payload.body)["choices"]
    assert choice["logprobs"] == {"content": [
        {"token": "Hi", "logprob": -0.5, "bytes": [72, 105], "top_logprobs": []},
        {"token": " there", "logprob": -1.25, "bytes": list(b" there"), "top_logprobs": []}], "refusal": None}


async def test_streamed_completion_logprobs_carry_text_offsets_across_chunks():
    payloads = await serialize(completion_request(logprobs=0, stream=True), LOGPROB_TEXTS)
    *chunks, _ = events(payloads)
    logprobs = [json.loads(c)["choices"][0]["logprobs"] for c in chunks]
    assert logprobs[0] == {"tokens": ["Hi"], "token_logprobs": [-0.5], "top_logprobs": [{"Hi": -0.5}],
                           "text_offset": [0]}
    assert logprobs[1]["text_offset"] == [2]


async def test_tokens_are_named_by_id_when_asked_as_vllm_does():
    (chat,) = await serialize(chat_request(logprobs=True, return_tokens_as_token_ids=True), LOGPROB_TEXTS)
    content = json.loads(chat.body)["choices"][0]["logprobs"]["content"]
    assert [(t["token"], t["bytes"]) for t in content] == [("token_id:17", [72, 105]), ("token_id:905", list(b" there"))]
    *chunks, _ = events(await serialize(completion_request(logprobs=0, stream=True, return_tokens_as_token_ids=True),
                                        LOGPROB_TEXTS))
    second = json.loads(chunks[1])["choices"][0]["logprobs"]
    # the offsets still count the text, which the ids do not show
    assert second == {"tokens": ["token_id:905"], "token_logprobs": [-1.25], "top_logprobs": [{"token_id:905": -1.25}],
                      "text_offset": [2]}


CALL_TEXTS = [TextDelta("Hel", None, 4, 1, index=0), TextDelta("", None, 4, 1, index=1, reasoning="think"),
              TextDelta("lo", "stop", 4, 2, index=0),
              TextDelta("", "tool_calls", 4, 3, index=1,
                        tool_calls=(ToolCall("call_1", "get", '{"city": "Paris"}'),))]


async def test_a_kept_answer_streamed_or_not_is_the_unary_chat_completion():
    unary = await serialize(chat_request(store=True, n=2), CALL_TEXTS)
    streamed = await serialize(chat_request(store=True, n=2, stream=True), CALL_TEXTS)
    assert [p.answer is None for p in streamed] == [True] * (len(streamed) - 1) + [False]
    (whole,) = unary
    assert whole.answer == json.loads(whole.body) == streamed[-1].answer
    first, second = whole.answer["choices"]
    assert first["message"]["content"] == "Hello" and first["finish_reason"] == "stop"
    assert second["message"]["reasoning_content"] == "think"
    assert second["message"]["tool_calls"][0]["function"] == {"name": "get", "arguments": '{"city": "Paris"}'}


async def test_an_answer_nobody_keeps_is_not_built():
    for request in (chat_request(), chat_request(stream=True), chat_request(store=False, stream=True),
                    completion_request()):
        assert all(p.answer is None for p in await serialize(request, TEXTS))
