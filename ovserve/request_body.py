"""A request body validated against its declared schema (a pydantic model): the value, or an OpenAI-shaped 400 that
names the field as the client wrote it (``messages[0].role``, ``response_format.json_schema``). Used by every
endpoint, whether a graph node or the server reads the body."""

from __future__ import annotations

import re
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from ovserve.errors import RequestError

_FIELD = re.compile(r"^[a-z_][a-z0-9_]*$")
_TYPE_NAMES = {"str", "int", "float", "bool", "list", "dict", "none"}
_UNKNOWN = object()


def _param(loc: tuple[str | int, ...], data: object = _UNKNOWN, missing: bool = False) -> tuple[str | None, str | None]:
    """(OpenAI's ``param`` like ``messages[0].role``, the union member the error is about).

    Pydantic's location also names union members (``str``, or a tagged union's tag, such as ``json_schema``);
    with the request's ``data`` at hand, a part is a field where the data has it (or, for a ``missing`` error,
    the last part), and a member otherwise; without it, by the look of its name."""
    param, member = "", None
    node = data
    for position, part in enumerate(loc):
        if isinstance(part, int):
            param += f"[{part}]"
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else _UNKNOWN
            continue
        if node is not _UNKNOWN:
            last = position == len(loc) - 1
            is_field = isinstance(node, dict) and (part in node or (missing and last))
            node = node.get(part, _UNKNOWN) if is_field and isinstance(node, dict) else node
        else:
            is_field = bool(_FIELD.match(part)) and part not in _TYPE_NAMES
        if is_field:
            if _FIELD.match(part):  # a key such as logit_bias's "50256" is no field name: its map is the param
                param += f".{part}" if param else part
        else:
            member = part
    return param or None, member


def validation_error(error: ValidationError, data: object = _UNKNOWN) -> RequestError:
    """The most telling problem of a pydantic error as an OpenAI ``invalid_request_error``; ``data`` is the input
    that was validated, to tell its fields from the union members in an error's location."""
    problems = error.errors()
    # With a union, every member reports; a member's own complaint beats "not of this type".
    first = next((p for p in problems if not p["type"].endswith("_type")), problems[0])
    param, member = _param(tuple(first["loc"]), data, first["type"] == "missing")
    members = [_param(tuple(p["loc"]), data, p["type"] == "missing") for p in problems]
    if len(members) > 1 and all(p["type"].endswith("_type") for p in problems) and {m[0] for m in members} == {param}:
        expected = " or ".join(m[1] or "?" for m in members)
        return RequestError(f"Invalid value for '{param}': expected {expected} (got {first.get('input')!r})",
                            param=param, code="invalid_value")
    if first["type"] == "missing":
        return RequestError(f"'{param}' is required", param=param, code="missing_required_parameter")
    value = f" (got {first['input']!r})" if "input" in first and not isinstance(first["input"], dict) else ""
    as_member = f" (as {member})" if member else ""
    message = first["msg"].removeprefix("Value error, ")
    return RequestError(f"Invalid value for '{param}'{as_member}: {message}{value}", param=param, code="invalid_value")


ModelT = TypeVar("ModelT", bound=BaseModel)


def parse_body(schema: type[ModelT], data: object) -> ModelT:
    """``data`` validated as ``schema``; a 400 naming the field otherwise."""
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        raise validation_error(error, data) from None
