"""structured_outputs, guided_* and structural tags, turned into the grammar the engine enforces, checked first."""

import json

import pytest

from ovserve.calculators.llm.request import completion_body
from ovserve.calculators.llm.schema import ChatCompletionRequest, CompletionRequest
from ovserve.engine.protocol import OutputGrammar
from ovserve.errors import RequestError

CHAT = {"model": "m", "messages": [{"role": "user", "content": "x"}]}


def constraint(**fields):
    body = completion_body(ChatCompletionRequest, {**CHAT, **fields})
    params = body.sampling_params(prompt_tokens=5, context_length=100, max_tokens_limit=None)
    return params.json_schema, params.grammar


def refusal(**fields):
    with pytest.raises(RequestError) as refused:
        constraint(**fields)
    return refused.value


def test_each_constraint_becomes_what_the_engine_enforces():
    assert constraint(structured_outputs={"regex": "[0-9]+"}) == (None, OutputGrammar("regex", "[0-9]+"))
    assert constraint(structured_outputs={"grammar": 'root ::= "a"'}) == (None, OutputGrammar("ebnf", 'root ::= "a"'))
    assert constraint(structured_outputs={"choice": ["a", "b"]}) == (None, OutputGrammar("choice", '["a", "b"]'))
    assert constraint(structured_outputs={"json_object": True}) == ('{"type": "object"}', None)
    schema, grammar = constraint(structured_outputs={"json": '{"type": "integer"}'})
    assert (json.loads(schema), grammar) == ({"type": "integer"}, None)


def test_vllms_legacy_fields_mean_the_same_and_errors_name_them_as_sent():
    assert constraint(guided_regex="[0-9]+") == constraint(structured_outputs={"regex": "[0-9]+"})
    assert constraint(guided_choice=["a"]) == (None, OutputGrammar("choice", '["a"]'))
    body = completion_body(CompletionRequest, {"model": "m", "prompt": "x", "guided_grammar": 'root ::= "a"'})
    assert body.structured_outputs is not None and body.structured_outputs.grammar == 'root ::= "a"'
    for fields, param in [({"guided_regex": "(a"}, "guided_regex"), ({"guided_json": {"type": 5}}, "guided_json"),
                          ({"guided_regex": "a", "guided_choice": ["a"]}, "guided_choice"),
                          ({"guided_regex": "a", "structured_outputs": {"regex": "a"}}, "guided_regex")]:
        error = refusal(**fields)
        assert error.param == param and param in error.message


def test_a_structural_tag_in_its_older_form_becomes_triggered_tags():
    tag = {"type": "structural_tag", "structures": [{"begin": "<f>", "schema": {"type": "integer"}, "end": "</f>"}],
           "triggers": ["<f"]}
    _, grammar = constraint(response_format=tag)
    assert grammar.kind == "structural_tag"
    assert json.loads(grammar.value)["format"] == {
        "type": "triggered_tags", "triggers": ["<f"], "at_least_one": False, "stop_after_first": False,
        "tags": [{"type": "tag", "begin": "<f>", "end": "</f>",
                  "content": {"type": "json_schema", "json_schema": {"type": "integer"}}}]}


@pytest.mark.parametrize(("fields", "param"), [
    ({"response_format": {"type": "structural_tag", "format": {"type": "sequence", "elements": [
        {"type": "regex", "pattern": "ok"}, {"type": "grammar", "grammar": "root ::= x"}]}}},
     "response_format.format.elements[1].grammar"),
    ({"response_format": {"type": "structural_tag", "format": {"type": "triggered_tags", "triggers": ["<a"],
                                                              "tags": [{"begin": "<b>", "content": {"type": "any_text"},
                                                                        "end": ""}]}}},
     "response_format.format.tags[0].begin"),
    ({"structured_outputs": {"structural_tag": '{"type": "structural_tag", "format": {"type": "json_schema", '
                                               '"json_schema": {"type": "integer", "minimum": 1e40}}}'}},
     "structured_outputs.structural_tag.format.json_schema"),
    ({"structured_outputs": {"structural_tag": {"format": {"type": "const_string", "value": ""}}}},
     "structured_outputs.structural_tag.format.value"),
    ({"structured_outputs": {"structural_tag": "{not json"}}, "structured_outputs.structural_tag"),
    ({"structured_outputs": {}}, "structured_outputs"),
    ({"structured_outputs": {"regex": "a"}, "tools": [{"type": "function", "function": {"name": "f"}}]},
     "structured_outputs"),
])
def test_whatever_is_wrong_inside_is_named_from_the_requests_root(fields, param):
    assert refusal(**fields).param == param
