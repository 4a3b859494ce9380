"""The Messages API's answers from hand-made text deltas: the message object, and the stream of events parsed with
the anthropic SDK's own types (tool calls in pieces, whole, or both; thinking; stop sequences)."""

import hashlib
import json

import pydantic
import pytest
from anthropic.types import Message, RawMessageStreamEvent

from ovserve.calculators.llm.messages_api import MessagesRequest, chat_body
from ovserve.calculators.llm.messages_writer import MessagesWriter
from ovserve.calculators.llm.schema import ChatCompletionRequest
from ovserve.calculators.llm.types import LLMRequest, TextDelta, ToolCall, ToolCallPiece

EVENTS = pydantic.TypeAdapter(RawMessageStreamEvent)


def writer(**fields) -> MessagesWriter:
    spec = MessagesRequest.model_validate({"model": "claude-x", "max_tokens": 2000,
                                           "messages": [{"role": "user", "content": "Hi"}], **fields})
    body = ChatCompletionRequest.model_validate(chat_body(spec))
    return MessagesWriter(LLMRequest("chat", body, "served", "msg_1", 0, messages=spec))


def delta(text="", finish=None, tokens=1, **fields) -> TextDelta:
    return TextDelta(text, finish, 7, tokens, **fields)


def unary(w: MessagesWriter, deltas: list[TextDelta]) -> Message:
    answers = [w.add(d) for d in deltas]
    assert answers[:-1] == [None] * (len(deltas) - 1)
    return Message.model_validate(answers[-1], strict=True)


def events(w: MessagesWriter, deltas: list[TextDelta]) -> list:
    """The stream's events, each parsed strictly with the SDK's union of stream events; the SSE name matches the
    event's type."""
    body = b"".join(w.stream(d) for d in deltas).decode()
    parsed = []
    for chunk in body.split("\n\n")[:-1]:
        name_line, data_line = chunk.split("\n")
        data = json.loads(data_line.removeprefix("data: "))
        assert name_line == f"event: {data['type']}"
        if data["type"] != "ping":
            parsed.append(EVENTS.validate_python(data))
    assert body.endswith("\n\n") and "event: ping" in body
    return parsed


def test_a_text_answer():
    message = unary(writer(), [delta("Hello"), delta(" there", "stop", 2)])
    assert message.id == "msg_1" and message.model == "served" and message.role == "assistant"
    assert [block.type for block in message.content] == ["text"] and message.content[0].text == "Hello there"
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    assert (message.usage.input_tokens, message.usage.output_tokens) == (7, 2)


def test_max_tokens_and_an_empty_answer():
    assert unary(writer(), [delta("a", "length", 5)]).stop_reason == "max_tokens"
    assert unary(writer(), [delta("", "stop")]).content == []


@pytest.mark.parametrize(("stops", "texts", "text", "matched"), [
    (["END"], ["one two ", "END"], "one two ", "END"),
    (["b", "ab"], ["x", "ab"], "x", "ab"),  # both end the text: the longer one began first, so it stopped it
    (["END"], ["one END"], "one ", "END"),
    (["END"], ["no stop here"], "no stop here", None),  # ended by end-of-sequence
])
def test_the_stop_sequence_that_ended_the_text_is_named_and_taken_off(stops, texts, text, matched):
    deltas = [delta(t) for t in texts[:-1]] + [delta(texts[-1], "stop")]
    message = unary(writer(stop_sequences=stops), deltas)
    assert message.content[0].text == text and message.stop_sequence == matched
    assert message.stop_reason == ("stop_sequence" if matched else "end_turn")
    streamed = events(writer(stop_sequences=stops), deltas)
    assert "".join(e.delta.text for e in streamed if e.type == "content_block_delta") == text
    assert streamed[-2].delta.stop_sequence == matched


def test_a_stop_sequence_is_not_looked_for_when_the_answer_was_cut_by_max_tokens():
    message = unary(writer(stop_sequences=["END"]), [delta("x END", "length")])
    assert message.content[0].text == "x END" and message.stop_reason == "max_tokens"


def test_thinking_comes_first_with_a_signature():
    deltas = [delta(reasoning="Let me think."), delta("Paris.", "stop", 5)]
    message = unary(writer(thinking={"type": "enabled", "budget_tokens": 1024}), deltas)
    thinking, text = message.content
    assert (thinking.type, thinking.thinking, text.text) == ("thinking", "Let me think.", "Paris.")
    assert thinking.signature == hashlib.sha256(b"Let me think.").hexdigest()
    omitted = unary(writer(thinking={"type": "adaptive", "display": "omitted"}), deltas).content[0]
    assert omitted.thinking == "" and omitted.signature == thinking.signature


def test_a_stream_of_thinking_then_text():
    streamed = events(writer(), [delta(reasoning="Hmm, "), delta(reasoning="yes."), delta("Hel"), delta("lo", "stop")])
    kinds = [(e.type, getattr(e, "index", None), getattr(getattr(e, "delta", None), "type", None)) for e in streamed]
    assert kinds == [("message_start", None, None),
                     ("content_block_start", 0, None), ("content_block_delta", 0, "thinking_delta"),
                     ("content_block_delta", 0, "thinking_delta"), ("content_block_delta", 0, "signature_delta"),
                     ("content_block_stop", 0, None),
                     ("content_block_start", 1, None), ("content_block_delta", 1, "text_delta"),
                     ("content_block_delta", 1, "text_delta"), ("content_block_stop", 1, None),
                     ("message_delta", None, None), ("message_stop", None, None)]
    assert streamed[4].delta.signature == hashlib.sha256(b"Hmm, yes.").hexdigest()
    assert streamed[0].message.usage.input_tokens == 7 and streamed[0].message.content == []
    assert streamed[-2].delta.stop_reason == "end_turn" and streamed[-2].usage.output_tokens == 1


CALL_0 = ToolCall("call_0", "get_weather", '{"city": "Paris"}')
CALL_1 = ToolCall("call_1", "get_time", '{"zone": "CET"}')


def tool_blocks(streamed) -> dict[int, tuple[str, str, str]]:
    """Per tool_use block: (id, name, its input_json_delta pieces joined), checking each block closes after its
    deltas and before the next block starts."""
    blocks, open_block = {}, None
    for event in streamed:
        if event.type == "content_block_start":
            assert open_block is None
            open_block = event.index
            if event.content_block.type == "tool_use":
                assert event.content_block.input == {}
                blocks[event.index] = (event.content_block.id, event.content_block.name, "")
        elif event.type == "content_block_delta":
            assert event.index == open_block
            if event.delta.type == "input_json_delta":
                call_id, name, text = blocks[event.index]
                blocks[event.index] = (call_id, name, text + event.delta.partial_json)
        elif event.type == "content_block_stop":
            assert event.index == open_block
            open_block = None
    assert open_block is None
    return blocks


def test_tool_calls_that_arrive_whole_stream_each_as_a_block_at_the_end():
    deltas = [delta("Checking. "), delta("", "tool_calls", 9, tool_calls=(CALL_0, CALL_1))]
    streamed = events(writer(), deltas)
    assert tool_blocks(streamed) == {1: ("call_0", "get_weather", CALL_0.arguments),
                                     2: ("call_1", "get_time", CALL_1.arguments)}
    assert streamed[-2].delta.stop_reason == "tool_use"
    message = unary(writer(), deltas)
    assert [b.type for b in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[1].input == {"city": "Paris"} and message.content[2].id == "call_1"
    assert message.stop_reason == "tool_use"


def test_tool_calls_that_stream_in_pieces_open_at_their_first_piece():
    pieces = [ToolCallPiece(0, "", "call_0", "get_weather"), ToolCallPiece(0, '{"city": '),
              ToolCallPiece(0, '"Paris"}'), ToolCallPiece(1, '{"zone"', "call_1", "get_time"),
              ToolCallPiece(1, ': "CET"}')]
    deltas = [delta(tool_call_pieces=(p,)) for p in pieces] + [delta("", "tool_calls", tool_calls=(CALL_0, CALL_1))]
    streamed = events(writer(), deltas)
    assert tool_blocks(streamed) == {0: ("call_0", "get_weather", CALL_0.arguments),
                                     1: ("call_1", "get_time", CALL_1.arguments)}
    # each piece went out as it came: the first call's block started before its arguments were whole
    starts = [i for i, e in enumerate(streamed) if e.type == "content_block_start"]
    first_json = next(i for i, e in enumerate(streamed)
                      if e.type == "content_block_delta" and e.delta.type == "input_json_delta")
    assert starts[0] < first_json < starts[1]


def test_a_call_without_pieces_falls_back_to_the_whole_call():
    pieces = (ToolCallPiece(0, '{"city": "Paris"}', "call_0", "get_weather"),)
    deltas = [delta(tool_call_pieces=pieces), delta("", "tool_calls", tool_calls=(CALL_0, CALL_1))]
    assert tool_blocks(events(writer(), deltas)) == {0: ("call_0", "get_weather", CALL_0.arguments),
                                                     1: ("call_1", "get_time", CALL_1.arguments)}


def test_pieces_that_fall_short_of_the_final_arguments_are_completed_from_them():
    pieces = (ToolCallPiece(0, '{"city": ', "call_0", "get_weather"),)
    deltas = [delta(tool_call_pieces=pieces), delta("", "tool_calls", tool_calls=(CALL_0,))]
    assert tool_blocks(events(writer(), deltas)) == {0: ("call_0", "get_weather", CALL_0.arguments)}


def test_a_stream_of_an_empty_answer_is_still_a_whole_message():
    streamed = events(writer(), [delta("", "stop")])
    assert [e.type for e in streamed] == ["message_start", "message_delta", "message_stop"]


def accumulated(streamed) -> Message:
    """The message the anthropic SDK's stream accumulator builds from the events."""
    from anthropic.lib.streaming._messages import accumulate_event

    message, buffers = None, {}
    for event in streamed:
        message = accumulate_event(event=event, current_snapshot=message, json_bufs=buffers)
    return message


def test_a_call_cut_by_max_tokens_has_the_same_input_in_the_message_and_in_the_stream():
    cut = ToolCall("call_0", "get_weather", '{"city": "Paris", "n": 12')
    deltas = [delta(tool_call_pieces=(ToolCallPiece(0, cut.arguments, "call_0", "get_weather"),)),
              delta("", "length", 9, tool_calls=(cut,))]
    message = unary(writer(), deltas)
    assert message.content[0].input == {"city": "Paris", "n": 12} and message.stop_reason == "max_tokens"
    assert accumulated(events(writer(), deltas)).content[0].input == message.content[0].input


def test_more_of_an_open_call_goes_to_its_block_before_text_opens_another():
    deltas = [delta(tool_call_pieces=(ToolCallPiece(0, '{"city": ', "call_0", "get_weather"),)),
              delta("Done now.", "tool_calls", 9, tool_call_pieces=(ToolCallPiece(0, '"Paris"}'),),
                    tool_calls=(CALL_0,))]
    streamed = events(writer(), deltas)
    assert tool_blocks(streamed)[0] == ("call_0", "get_weather", CALL_0.arguments)  # no delta to a closed block


def test_a_stop_sequence_met_while_thinking_is_taken_off_in_the_message_as_in_the_stream():
    deltas = [delta(reasoning="Let me "), delta(reasoning="think END", finish="stop")]
    message = unary(writer(stop_sequences=["END"]), deltas)
    assert (message.content[0].thinking, message.stop_sequence, message.stop_reason) == (
        "Let me think ", "END", "stop_sequence")
    assert message.content[0].signature == hashlib.sha256(b"Let me think ").hexdigest()
    streamed = events(writer(stop_sequences=["END"]), deltas)
    assert streamed[-2].delta.stop_sequence == "END"
