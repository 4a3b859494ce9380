"""Grammars beyond JSON on the real model: vLLM's structured_outputs (regex, choice, EBNF grammar, json,
json_object, structural_tag), its legacy guided_* fields, and OVMS's structural-tag response_format. The answer
matches the grammar (a property of the answer, whatever the CPU computes); a grammar the engine could not compile
is a 400 naming it, and the engine keeps running."""

import json
import re

import httpx
import jsonschema
import pytest

from tests.conftest import MODEL_NAME

pytestmark = pytest.mark.slow

ASK = [{"role": "user", "content": "What is the capital of France?"}]


def chat(server, **fields):
    body = {"model": MODEL_NAME, "messages": ASK, "max_tokens": 40, "temperature": 0.7, "seed": 3, **fields}
    return httpx.post(f"{server.base_url}/v3/chat/completions", json=body, timeout=120)


def answer(server, **fields):
    response = chat(server, **fields)
    assert response.status_code == 200, response.text
    (choice,) = response.json()["choices"]
    assert choice["finish_reason"] == "stop", choice
    return choice["message"]["content"]


def test_a_regex_holds_the_answer(server):
    assert re.fullmatch(r"[0-9]{3}-[A-Z]{2}", answer(server, structured_outputs={"regex": "[0-9]{3}-[A-Z]{2}"}))


def test_a_choice_answers_with_one_of_its_strings(server):
    choices = ["Paris", "London", "Rome, \"Italy\""]
    assert answer(server, structured_outputs={"choice": choices}) in choices


def test_an_ebnf_grammar_holds_the_answer(server):
    grammar = 'root ::= answer "."\nanswer ::= "yes" | "no" | city\ncity ::= [A-Z] [a-z]{1,8}'
    assert re.fullmatch(r"(yes|no|[A-Z][a-z]{1,8})\.", answer(server, structured_outputs={"grammar": grammar}))


def test_json_and_json_object_hold_the_answer_to_json(server):
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"],
              "additionalProperties": False}
    jsonschema.validate(json.loads(answer(server, structured_outputs={"json": schema}, max_tokens=60)), schema)
    as_text = answer(server, structured_outputs={"json": json.dumps(schema)}, max_tokens=60)  # vLLM takes it as text
    jsonschema.validate(json.loads(as_text), schema)


def test_a_structural_tag_in_response_format_holds_the_answer(server):
    tag = {"type": "structural_tag", "format": {"type": "sequence", "elements": [
        {"type": "const_string", "value": "Answer: "}, {"type": "regex", "pattern": "[0-9]{1,4}"}]}}
    assert re.fullmatch(r"Answer: [0-9]{1,4}", answer(server, response_format=tag))


def test_vllms_legacy_guided_fields_still_work_on_completions_too(server):
    text = httpx.post(f"{server.base_url}/v3/completions", timeout=120, json={
        "model": MODEL_NAME, "prompt": "The capital of France is", "max_tokens": 10, "guided_choice": ["Paris", "Lyon"]})
    assert text.status_code == 200 and text.json()["choices"][0]["text"] in ("Paris", "Lyon")
    assert re.fullmatch("[a-z]{2,5}", answer(server, guided_regex="[a-z]{2,5}"))


def test_a_streamed_answer_matches_the_grammar_piece_by_piece(server):
    body = {"model": MODEL_NAME, "messages": ASK, "max_tokens": 40, "stream": True,
            "structured_outputs": {"regex": "[A-Z][a-z]{1,12} is in [A-Z][a-z]{1,12}\\."}}
    pieces = []
    with httpx.stream("POST", f"{server.base_url}/v3/chat/completions", json=body, timeout=120) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                pieces += [c["delta"].get("content") or "" for c in json.loads(line[6:])["choices"]]
    assert len([p for p in pieces if p]) > 2 and re.fullmatch(r"[A-Z][a-z]{1,12} is in [A-Z][a-z]{1,12}\.", "".join(pieces))


@pytest.mark.parametrize(("fields", "param"), [
    ({"structured_outputs": {"regex": "[a-"}}, "structured_outputs.regex"),
    ({"structured_outputs": {"regex": "\\bword\\b"}}, "structured_outputs.regex"),
    ({"structured_outputs": {"grammar": "root ::= undefined"}}, "structured_outputs.grammar"),
    ({"structured_outputs": {"grammar": 'root ::= "a" |'}}, "structured_outputs.grammar"),
    ({"structured_outputs": {"regex": "a", "choice": ["a"]}}, "structured_outputs"),
    ({"structured_outputs": {"whitespace_pattern": " "}}, "structured_outputs.whitespace_pattern"),
    ({"structured_outputs": {"choice": []}}, "structured_outputs.choice"),
    ({"guided_regex": "(a"}, "guided_regex"),
    ({"guided_grammar": "x ::= \"a\""}, "guided_grammar"),
    ({"guided_whitespace_pattern": " "}, "guided_whitespace_pattern"),
    ({"response_format": {"type": "structural_tag", "format": {"type": "regex", "pattern": "[a-"}}},
     "response_format.format.pattern"),
    ({"response_format": {"type": "structural_tag", "format": {"type": "nope"}}}, "response_format.format"),
    ({"structured_outputs": {"regex": "a"}, "response_format": {"type": "json_object"}}, "structured_outputs"),
])
def test_a_grammar_the_engine_could_not_compile_is_a_400_and_the_engine_runs_on(server, fields, param):
    starts = server.metric("ovserve_engine_starts_total")
    refused = chat(server, **fields)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["param"] == param, refused.json()
    assert answer(server, structured_outputs={"choice": ["ok"]}) == "ok"
    assert server.metric("ovserve_engine_starts_total") == starts
