"""response_format: the schema the engine gets, and the schemas refused before they could reach it."""

import json

import pytest
from pydantic import TypeAdapter, ValidationError

from ovserve.calculators.llm.structured_output import ResponseFormat, check_schema, engine_json_schema
from ovserve.errors import RequestError

FORMAT = TypeAdapter(ResponseFormat)
PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
          "required": ["name", "age"], "additionalProperties": False}


def schema_for(response_format):
    return engine_json_schema(FORMAT.validate_python(response_format))


def test_text_needs_no_schema_and_json_object_asks_for_any_object():
    assert schema_for({"type": "text"}) is None
    assert json.loads(schema_for({"type": "json_object"})) == {"type": "object"}


def test_a_json_schema_reaches_the_engine_as_given():
    assert json.loads(schema_for({"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON,
                                                                         "strict": True}})) == PERSON


def test_an_unknown_type_or_a_bad_name_is_invalid():
    with pytest.raises(ValidationError):
        FORMAT.validate_python({"type": "yaml"})
    with pytest.raises(ValidationError):
        FORMAT.validate_python({"type": "json_schema", "json_schema": {"name": "has spaces", "schema": PERSON}})


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        ({"type": "foo"}, "not a valid JSON Schema at type"),
        ({"type": "object", "minProperties": 1}, "uses 'minProperties' at #"),
        ({"type": "object", "properties": {"a": {"not": {"type": "string"}}}}, "uses 'not' at #/properties/a"),
        ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, "uses 'uniqueItems' at #"),
        ({"type": "object", "properties": {"p": {"$ref": "#/$defs/Missing"}}}, "a $ref at #/properties/p"),
        ({"type": "object", "properties": {"p": {"$ref": "http://example.com/s.json"}}}, "only local references"),
        ({"type": "string", "pattern": "(?=a)a+"}, "lookaround"),
        ({"type": "string", "format": "flavour"}, "format 'flavour' at #"),
        ({"type": "string", "pattern": "(?i)abc"}, "flags"),
        ({"type": "string", "pattern": "a++"}, "possessive"),
        ({"enum": []}, "empty enum at #"),
        ({"type": "integer", "minimum": 5, "maximum": 1}, "minimum above maximum at #"),
        ({"type": "string", "maxLength": 1_000_000_000}, "maxLength 1000000000 at #"),
        ({"type": "number", "default": float("nan")}, "NaN"),
        # the engine's grammar compiler holds an integer's bounds as 64-bit integers (a step failed on each of these)
        ({"type": "integer", "minimum": -1e40, "maximum": 1e40}, "minimum -1e+40 on an integer at #"),
        ({"type": ["integer", "null"], "maximum": 2**63}, "maximum 9223372036854775808 on an integer at #"),
        ({"type": "integer", "exclusiveMinimum": 2**63 - 1}, "exclusiveMinimum 9223372036854775807"),
        ({"type": "integer", "exclusiveMaximum": -(2**63)}, "exclusiveMaximum -9223372036854775808"),
        ({"type": "integer", "minimum": 1, "exclusiveMaximum": 1}, "leaves no integer between its bounds at #"),
        ({"type": "object", "properties": {"a": False, "b": {"type": "number"}}}, "schema false (no value) at "
                                                                                 "#/properties/a"),
        ({"anyOf": [False, {"type": "integer"}]}, "schema false (no value) at #/anyOf/0"),
        ({"allOf": [{"type": "integer", "minimum": 5}, {"type": "integer", "maximum": 7}]}, "allOf of 2 schemas at #"),
        ({"type": "string", "pattern": "^[a-z]+$", "maxLength": 5}, "enforces the pattern alone and would ignore "
                                                                    "maxLength"),
        ({"type": "integer", "exclusiveMinimum": 1, "exclusiveMaximum": 2}, "leaves no integer"),
        ({"type": "number", "exclusiveMinimum": 1, "maximum": 1}, "leaves no number between its bounds at #"),
        ({"type": "object", "properties": {"n": {"type": "integer", "minimum": 0.5}}},
         "minimum 0.5 on an integer at #/properties/n; constrained decoding takes a whole number"),
        ({"$schema": "http://json-schema.org/draft-07/schema#", "type": "array", "items": [{"not": {}}]},
         "uses 'not' at #/items/0"),
    ],
)
def test_schemas_the_engine_cannot_take_are_refused_naming_the_place(schema, words):
    with pytest.raises(RequestError) as caught:
        check_schema(schema)
    assert caught.value.status == 400 and caught.value.param == "response_format.json_schema.schema"
    assert words in caught.value.message


def test_references_definitions_and_combinations_are_accepted():
    check_schema({"$defs": {"N": {"type": "object", "properties": {"v": {"type": "integer"},
                                                                  "next": {"anyOf": [{"$ref": "#/$defs/N"},
                                                                                     {"type": "null"}]}}}},
                  "$ref": "#/$defs/N"})
    check_schema({"type": "object", "properties": {"when": {"type": "string", "format": "date-time"},
                                                   "tags": {"type": "array", "items": {"enum": ["a", "b"]}}}})


def test_integer_bounds_at_the_ends_of_64_bits_and_any_number_bounds_are_accepted():
    check_schema({"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1, "exclusiveMinimum": -(2**63),
                  "exclusiveMaximum": 2**63 - 1})
    check_schema({"type": "integer", "minimum": 9.2e18})  # a whole number, as a float
    check_schema({"type": "number", "minimum": -1e40, "maximum": 1e308, "exclusiveMinimum": 0.5})
    check_schema({"type": "integer", "minimum": 1, "maximum": 1})  # one integer is enough
    check_schema({"type": "array", "prefixItems": [{"type": "integer"}], "items": False,
                  "additionalProperties": False})
    check_schema({"type": "number", "exclusiveMinimum": 1, "exclusiveMaximum": 1.5})


def test_non_capturing_groups_are_fine():
    check_schema({"type": "string", "pattern": "^(?:ab)+$"})
