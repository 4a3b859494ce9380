"""Grammars beyond JSON: vLLM's ``structured_outputs`` (and its legacy ``guided_*`` fields) and XGrammar structural
tags (OVMS's ``response_format: {"type": "structural_tag", ...}``), turned into what the engine enforces.

Each is checked here before the engine sees it (:mod:`.grammar_check`, :func:`.structured_output.check_schema`):
a request's grammar the engine could not compile would fail an engine step for every request in it.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ovserve.calculators.llm.grammar_check import check_ebnf, check_regex
from ovserve.calculators.llm.structured_output import (
    JSONObjectFormat,
    JSONSchemaFormat,
    TextFormat,
    check_schema,
    engine_json_schema,
)
from ovserve.engine.protocol import OutputGrammar
from ovserve.errors import RequestError

#: The most choices of ``structured_outputs.choice``, and the longest one.
MAX_CHOICES = 1024
MAX_CHOICE_LENGTH = 4096


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- XGrammar structural tags ----------------------------------------------------------------------------------

class ConstString(_Strict):
    type: Literal["const_string"]
    value: Annotated[str, Field(min_length=1)]


class JSONSchemaTagFormat(_Strict):
    type: Literal["json_schema"]
    json_schema: dict[str, Any]


class RegexFormat(_Strict):
    type: Literal["regex"]
    pattern: str


class GrammarFormat(_Strict):
    type: Literal["grammar"]
    grammar: str


class AnyText(_Strict):
    type: Literal["any_text"]


class Sequence(_Strict):
    type: Literal["sequence"]
    elements: Annotated[list[TagContent], Field(min_length=1, max_length=64)]


class Or(_Strict):
    type: Literal["or"]
    elements: Annotated[list[TagContent], Field(min_length=1, max_length=64)]


class Tag(_Strict):
    type: Literal["tag"] = "tag"
    begin: Annotated[str, Field(min_length=1)]
    content: TagContent
    end: str


class TriggeredTags(_Strict):
    type: Literal["triggered_tags"]
    triggers: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1, max_length=64)]
    tags: Annotated[list[Tag], Field(min_length=1, max_length=128)]
    at_least_one: bool = False
    stop_after_first: bool = False


class TagsWithSeparator(_Strict):
    type: Literal["tags_with_separator"]
    tags: Annotated[list[Tag], Field(min_length=1, max_length=128)]
    separator: str
    at_least_one: bool = False
    stop_after_first: bool = False


TagContent = Annotated[ConstString | JSONSchemaTagFormat | RegexFormat | GrammarFormat | AnyText | Sequence | Or
                       | Tag | TriggeredTags | TagsWithSeparator, Field(discriminator="type")]
for _model in (Sequence, Or, Tag, TriggeredTags):
    _model.model_rebuild()


class LegacyStructure(_Strict):
    begin: Annotated[str, Field(min_length=1)]
    schema_: dict[str, Any] = Field(alias="schema")
    end: str


class StructuralTag(BaseModel):
    """An XGrammar structural tag: ``{"type": "structural_tag", "format": {...}}``, or the older
    ``{"type": "structural_tag", "structures": [{"begin", "schema", "end"}], "triggers": [...]}`` (vLLM's)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    type: Literal["structural_tag"] = "structural_tag"
    format: TagContent | None = None
    structures: Annotated[list[LegacyStructure], Field(min_length=1, max_length=128)] | None = None
    triggers: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1, max_length=64)] | None = None

    def grammar(self, param: str) -> OutputGrammar:
        """The engine's form (its current JSON form), every part checked; a 400 naming ``param`` otherwise."""
        if (self.format is None) == (self.structures is None):
            raise RequestError(f"'{param}' needs either 'format' or 'structures' (with 'triggers')", param=param,
                               code="invalid_value")
        content = self.format
        if content is None:
            assert self.structures is not None
            if not self.triggers:
                raise RequestError(f"'{param}.triggers' is required with 'structures': the strings that start them",
                                   param=f"{param}.triggers", code="invalid_value")
            tags = [Tag(begin=s.begin, content=JSONSchemaTagFormat(type="json_schema", json_schema=s.schema_),
                        end=s.end) for s in self.structures]
            content = TriggeredTags(type="triggered_tags", triggers=self.triggers or [], tags=tags)
        _check_content(content, f"{param}.format")
        tag = {"type": "structural_tag", "format": content.model_dump(mode="json")}
        return OutputGrammar("structural_tag", json.dumps(tag, allow_nan=False))


def _check_content(content: Any, param: str) -> None:
    """Check each regex, grammar and JSON Schema inside a structural tag, and that triggered tags begin with one
    of their triggers (XGrammar refuses them otherwise)."""
    if isinstance(content, JSONSchemaTagFormat):
        check_schema(content.json_schema, f"{param}.json_schema")
    elif isinstance(content, RegexFormat):
        check_regex(content.pattern, f"{param}.pattern")
    elif isinstance(content, GrammarFormat):
        check_ebnf(content.grammar, f"{param}.grammar")
    elif isinstance(content, Sequence | Or):
        for index, element in enumerate(content.elements):
            _check_content(element, f"{param}.elements[{index}]")
    elif isinstance(content, Tag):
        _check_content(content.content, f"{param}.content")
    elif isinstance(content, TriggeredTags | TagsWithSeparator):
        for index, tag in enumerate(content.tags):
            if isinstance(content, TriggeredTags) and not any(tag.begin.startswith(t) for t in content.triggers):
                raise RequestError(f"'{param}.tags[{index}].begin' ({tag.begin!r}) starts with none of the triggers",
                                   param=f"{param}.tags[{index}].begin", code="invalid_value")
            _check_content(tag.content, f"{param}.tags[{index}].content")


# --- vLLM's structured_outputs --------------------------------------------------------------------------------

class StructuredOutputs(_Strict):
    """vLLM's ``structured_outputs``: exactly one of its constraints. Its tuning fields (whitespace patterns,
    backends) are not taken: they are refused by name, as unknown fields are."""

    json_: dict[str, Any] | str | None = Field(None, alias="json")
    regex: str | None = None
    choice: Annotated[list[Annotated[str, Field(min_length=1, max_length=MAX_CHOICE_LENGTH)]],
                      Field(min_length=1, max_length=MAX_CHOICES)] | None = None
    grammar: str | None = None
    json_object: bool | None = None
    structural_tag: str | dict[str, Any] | None = None
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def constraint(self, param: str) -> tuple[str | None, OutputGrammar | None]:
        """(a JSON Schema as text, or a grammar): what the engine holds the answer to."""
        given = [name for name in ("json_", "regex", "choice", "grammar", "structural_tag") if
                 getattr(self, name) is not None] + (["json_object"] if self.json_object else [])
        if len(given) != 1:
            names = ", ".join(name.rstrip("_") for name in given) or "none"
            raise RequestError(f"'{param}' must set exactly one of json, regex, choice, grammar, json_object and "
                               f"structural_tag (it sets {names})", param=param, code="invalid_value")
        if self.json_object:
            return json.dumps({"type": "object"}), None
        if self.json_ is not None:
            return _json_schema(self.json_, f"{param}.json"), None
        if self.regex is not None:
            check_regex(self.regex, f"{param}.regex")
            return None, OutputGrammar("regex", self.regex)
        if self.grammar is not None:
            check_ebnf(self.grammar, f"{param}.grammar")
            return None, OutputGrammar("ebnf", self.grammar)
        if self.choice is not None:
            return None, OutputGrammar("choice", json.dumps(self.choice))
        return None, _structural_tag(self.structural_tag, f"{param}.structural_tag")


def _object(value: Any, param: str, what: str) -> dict[str, Any]:
    """``value`` as a JSON object (vLLM takes these as objects or as their JSON text); a 400 naming ``param``."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError) as error:
            raise RequestError(f"'{param}' is not JSON: {error}", param=param, code="invalid_value") from None
    if not isinstance(value, dict):
        raise RequestError(f"'{param}' must be {what}", param=param, code="invalid_value")
    return value


def _json_schema(schema: dict[str, Any] | str, param: str) -> str:
    schema = _object(schema, param, "a JSON Schema object")
    check_schema(schema, param)
    return json.dumps(schema, allow_nan=False)


def _structural_tag(value: Any, param: str) -> OutputGrammar:
    from ovserve.request_body import parse_body  # the request module imports the schema, which imports this

    value = _object(value, param, 'a structural tag object ({"type": "structural_tag", "format": ...})')
    try:
        tag = parse_body(StructuralTag, value)
    except RequestError as error:  # named from inside the tag: name it from the request's root
        inner = error.param or ""
        where = f"{param}.{inner}" if inner and not inner.startswith("[") else f"{param}{inner}"
        raise RequestError(error.message.replace(f"'{inner}'", f"'{where}'") if inner else error.message,
                           param=where, code=error.code) from None
    return tag.grammar(param)


#: ``response_format`` as chat and text completions take it: OpenAI's three, and OVMS's XGrammar structural tag.
ChatResponseFormat = Annotated[TextFormat | JSONObjectFormat | JSONSchemaFormat | StructuralTag,
                               Field(discriminator="type")]


def output_constraint(response_format: TextFormat | JSONObjectFormat | JSONSchemaFormat | StructuralTag | None,
                      structured_outputs: StructuredOutputs | None) -> tuple[str | None, OutputGrammar | None]:
    """What the engine holds an answer to: (a JSON Schema as text, or a grammar), or neither for free text."""
    if structured_outputs is not None:
        if response_format is not None and response_format.type != "text":
            raise RequestError("'structured_outputs' cannot be combined with 'response_format': set one",
                               param="structured_outputs", code="invalid_value")
        return structured_outputs.constraint("structured_outputs")
    if isinstance(response_format, StructuralTag):
        return None, response_format.grammar("response_format")
    return engine_json_schema(response_format), None


#: vLLM's legacy fields (removed in its v0.12, still sent by older clients) and the constraint each means.
LEGACY_FIELDS = {"guided_json": "json", "guided_regex": "regex", "guided_choice": "choice",
                 "guided_grammar": "grammar"}


def legacy_structured_outputs(extra: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(the legacy field, the ``structured_outputs`` it means) for a request that sends ``guided_*``."""
    given = [name for name in LEGACY_FIELDS if extra.get(name) is not None]
    if not given:
        return None
    if len(given) > 1:
        raise RequestError(f"'{given[1]}' cannot be combined with '{given[0]}': set one constraint",
                           param=given[1], code="invalid_value")
    return given[0], {LEGACY_FIELDS[given[0]]: extra[given[0]]}
