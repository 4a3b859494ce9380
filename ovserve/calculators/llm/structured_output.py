"""``response_format``: the JSON a request's answer must be, enforced by constrained decoding.

The engine (OpenVINO GenAI's XGrammar backend) compiles a request's JSON Schema inside an engine
step, and a schema it cannot compile breaks that step for every request in it. So a schema is checked
here first, in the HTTP process: it must be a valid JSON Schema (``jsonschema``'s meta-schema check),
use only keywords the engine was measured to compile, and use only local ``$ref``s that resolve.
Anything else is refused with a 400 naming the keyword and where it is; never answered unconstrained.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict, Field

from ovserve.errors import RequestError

PARAM = "response_format"

#: Keywords the engine compiles (probed one by one against openvino-genai 2026.4's XGrammar).
SUPPORTED_KEYWORDS = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems",
    "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs", "definitions", "minLength", "maxLength",
    "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    # annotations, which do not constrain the output
    "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly",
    "writeOnly",
})
#: String formats the engine enforces (``format`` with any other value is refused).
SUPPORTED_FORMATS = frozenset({"date-time", "date", "time", "duration", "email", "hostname", "ipv4", "ipv6",
                               "uuid", "uri"})
#: Keywords whose value is a map of names to schemas, or a list of schemas.
_SCHEMA_MAPS = ("properties", "$defs", "definitions")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_VALUES = ("items", "additionalProperties")
#: Regular-expression features the engine's pattern compiler does not have.
_UNSUPPORTED_REGEX = re.compile(r"\(\?(?!:)|\\[1-9]|\\[pP]\{|[*+?}]\+")


class _Format(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TextFormat(_Format):
    type: Literal["text"]


class JSONObjectFormat(_Format):
    type: Literal["json_object"]


class JSONSchemaSpec(_Format):
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class JSONSchemaFormat(_Format):
    type: Literal["json_schema"]
    json_schema: JSONSchemaSpec


ResponseFormat = Annotated[TextFormat | JSONObjectFormat | JSONSchemaFormat, Field(discriminator="type")]


def engine_json_schema(response_format: TextFormat | JSONObjectFormat | JSONSchemaFormat | None) -> str | None:
    """The JSON Schema (as text) the engine must hold the answer to; ``None`` for plain text.

    Raises :class:`RequestError` (400, ``param`` naming the place) for a schema the engine cannot take."""
    if response_format is None or isinstance(response_format, TextFormat):
        return None
    if isinstance(response_format, JSONObjectFormat):
        return json.dumps({"type": "object"})
    schema = response_format.json_schema.schema_
    if schema is None:
        schema = {"type": "object"}
    check_schema(schema)
    return json.dumps(schema, allow_nan=False)


def check_schema(schema: dict[str, Any], param: str = f"{PARAM}.json_schema.schema") -> None:
    """Refuse a schema that is not valid JSON Schema or that the engine cannot compile (``param`` says where
    it is in the request)."""
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as error:
        where = "/".join(str(p) for p in error.absolute_path) or "the root"
        raise RequestError(f"'{param}' is not a valid JSON Schema at {where}: {error.message}",
                           param=param, code="invalid_value") from None
    try:
        json.dumps(schema, allow_nan=False)
    except ValueError:
        raise RequestError(f"'{param}' has NaN or an infinite number, which JSON does not have", param=param,
                           code="invalid_value") from None
    for path, sub in _subschemas(schema, "#"):
        _check_bounds(sub, path, param)
        _check_no_false(sub, path, param)
        if len(sub.get("allOf") or ()) > 1:  # measured: answered as any JSON value, with a warning in the log
            raise RequestError(f"'{param}' has an allOf of {len(sub['allOf'])} schemas at {path}; constrained "
                               f"decoding enforces an allOf of one schema only: merge them into one",
                               param=param, code="unsupported_parameter")
        ignored = [keyword for keyword in ("minLength", "maxLength", "format") if keyword in sub]
        if "pattern" in sub and ignored:  # the engine would drop them with a warning in its log
            raise RequestError(f"'{param}' has a pattern and {', '.join(ignored)} at {path}; constrained decoding "
                               f"enforces the pattern alone and would ignore {ignored[0]}: write the length or "
                               f"format into the pattern", param=param, code="unsupported_parameter")
        for keyword, value in sub.items():
            if keyword not in SUPPORTED_KEYWORDS:
                raise RequestError(f"'{param}' uses '{keyword}' at {path}, which constrained decoding does not "
                                   f"support; supported keywords: {', '.join(sorted(SUPPORTED_KEYWORDS))}",
                                   param=param, code="unsupported_parameter")
            if keyword == "$ref" and not _resolves(schema, value):
                raise RequestError(f"'{param}' has a $ref at {path} that does not point into the schema: "
                                   f"{value!r} (only local references such as '#/$defs/Name' are supported)",
                                   param=param, code="invalid_value")
            if keyword == "format" and value not in SUPPORTED_FORMATS:
                raise RequestError(f"'{param}' has format {value!r} at {path}, which constrained decoding does not "
                                   f"enforce; supported formats: {', '.join(sorted(SUPPORTED_FORMATS))}",
                                   param=param, code="unsupported_parameter")
            if keyword == "pattern" and _UNSUPPORTED_REGEX.search(value):
                raise RequestError(f"'{param}' has a pattern at {path} with groups of the (?...) kind (lookaround, "
                                   f"flags, named or atomic groups), backreferences, Unicode classes or possessive "
                                   f"quantifiers, which constrained decoding does not support: {value!r}",
                                   param=param, code="unsupported_parameter")


#: The most a length or count bound may ask for (larger ones make the engine's grammar huge).
MAX_BOUND = 10_000
_BOUND_PAIRS = (("minLength", "maxLength"), ("minItems", "maxItems"), ("minimum", "maximum"))


def _check_bounds(sub: dict[str, Any], path: str, param: str) -> None:
    """Refuse schemas no answer can satisfy, and bounds too large for a grammar."""
    if sub.get("enum") == []:
        raise RequestError(f"'{param}' has an empty enum at {path}: no answer can satisfy it", param=param,
                           code="invalid_value")
    for low, high in _BOUND_PAIRS:
        if isinstance(sub.get(low), int | float) and isinstance(sub.get(high), int | float) and sub[low] > sub[high]:
            raise RequestError(f"'{param}' has {low} above {high} at {path}: no answer can satisfy it",
                               param=param, code="invalid_value")
    for keyword in ("minLength", "maxLength", "minItems", "maxItems"):
        if isinstance(sub.get(keyword), int | float) and sub[keyword] > MAX_BOUND:
            raise RequestError(f"'{param}' has {keyword} {sub[keyword]} at {path}; constrained decoding takes at "
                               f"most {MAX_BOUND}", param=param, code="unsupported_parameter")
    types = sub.get("type")
    integer = types == "integer" or (isinstance(types, list) and "integer" in types)
    if integer:
        _check_integer_bounds(sub, path, param)
    if _empty_range(sub, integer):
        bounds = ", ".join(f"{k} {sub[k]!r}" for k in INT64_RANGE if _is_number(sub.get(k)))
        raise RequestError(f"'{param}' leaves no {'integer' if integer else 'number'} between its bounds at {path} "
                           f"({bounds}): no answer can satisfy it", param=param, code="invalid_value")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _empty_range(sub: dict[str, Any], integer: bool) -> bool:
    """Whether no value lies within the schema's bounds, exclusive ones included (the engine's grammar compiler
    fails its step on such a range)."""
    lows = [(sub[k], k == "exclusiveMinimum") for k in ("minimum", "exclusiveMinimum") if _is_number(sub.get(k))]
    highs = [(sub[k], k == "exclusiveMaximum") for k in ("maximum", "exclusiveMaximum") if _is_number(sub.get(k))]
    if not lows or not highs:
        return False
    if integer:  # the whole numbers within: an exclusive bound excludes itself, a fraction rounds inwards
        low = max(math.floor(v) + 1 if exclusive else math.ceil(v) for v, exclusive in lows)
        high = min(math.ceil(v) - 1 if exclusive else math.floor(v) for v, exclusive in highs)
        return low > high
    (low, low_open), (high, high_open) = max(lows), min(highs, key=lambda b: (b[0], not b[1]))
    return low > high or (low == high and (low_open or high_open))


#: The range of an integer schema's bounds: the engine's grammar compiler holds them as 64-bit integers, and a
#: bound outside it, or one with a fraction, fails the engine step (measured with openvino-genai 2026.4).
INT64_RANGE = {"minimum": (-(2**63), 2**63 - 1), "maximum": (-(2**63), 2**63 - 1),
               "exclusiveMinimum": (-(2**63), 2**63 - 2), "exclusiveMaximum": (-(2**63) + 1, 2**63 - 1)}


def _check_integer_bounds(sub: dict[str, Any], path: str, param: str) -> None:
    for keyword, (low, high) in INT64_RANGE.items():
        value = sub.get(keyword)
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        whole = isinstance(value, int) or value.is_integer()
        if not whole or not low <= int(value) <= high:
            raise RequestError(f"'{param}' has {keyword} {value!r} on an integer at {path}; constrained decoding takes "
                               f"a whole number from {low} to {high} there", param=param, code="unsupported_parameter")


def _check_no_false(sub: dict[str, Any], path: str, param: str) -> None:
    """Refuse the schema ``false`` (no value) where the engine's grammar compiler fails its step on it: as a
    property, a definition or a member of a combination (it takes it as ``items`` or ``additionalProperties``)."""
    places = [*(f"{keyword}/{name}" for keyword in _SCHEMA_MAPS for name, value in (sub.get(keyword) or {}).items()
                if value is False),
              *(f"{keyword}/{index}" for keyword in _SCHEMA_LISTS for index, value in enumerate(sub.get(keyword) or ())
                if value is False)]
    if places:
        raise RequestError(f"'{param}' has the schema false (no value) at {path}/{places[0]}, which constrained "
                           f"decoding does not support there; leave the property out, or use "
                           f"\"additionalProperties\": false", param=param, code="unsupported_parameter")


def _subschemas(schema: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema object in ``schema`` (booleans are schemas too, with no keywords), with its path."""
    if not isinstance(schema, dict):
        return
    yield path, schema
    for keyword in _SCHEMA_MAPS:
        for name, sub in (schema.get(keyword) or {}).items():
            yield from _subschemas(sub, f"{path}/{keyword}/{name}")
    for keyword in _SCHEMA_LISTS:
        for index, sub in enumerate(schema.get(keyword) or ()):
            yield from _subschemas(sub, f"{path}/{keyword}/{index}")
    for keyword in _SCHEMA_VALUES:
        value = schema.get(keyword)
        if isinstance(value, list):  # draft-07 tuple items: a list of schemas
            for index, sub in enumerate(value):
                yield from _subschemas(sub, f"{path}/{keyword}/{index}")
        else:
            yield from _subschemas(value, f"{path}/{keyword}")


def _resolves(schema: dict[str, Any], ref: str) -> bool:
    if ref == "#":
        return True
    if not ref.startswith("#/"):
        return False
    node: Any = schema
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return isinstance(node, dict | bool)
