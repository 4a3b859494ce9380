"""Validate a parsed text-format message against a pydantic model, keeping source locations.

One converter serves both the graph config (``CalculatorGraphConfig`` fields) and every calculator's
options: a text-format message has no types of its own, so the model says which fields repeat, which
are nested messages and which stay raw; pydantic then validates the values. Every problem names the
file:line:column where the offending field was written.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ovserve.framework.errors import GraphConfigError, Problem
from ovserve.framework.textproto import Field, Message, SourceLocation

ModelT = TypeVar("ModelT", bound=BaseModel)
Path = tuple[str | int, ...]


def did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def _unwrap(annotation: Any) -> tuple[bool, Any]:
    """(is_repeated, element type) of a field annotation, looking through ``X | None``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
        return False, annotation
    if origin in (list, tuple, set, frozenset):
        args = typing.get_args(annotation)
        return True, args[0] if args else Any
    return False, annotation


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


class _Converter:
    def __init__(self, node: str | None) -> None:
        self.node = node
        self.problems: list[Problem] = []
        self.locations: dict[Path, SourceLocation] = {}

    def problem(self, message: str, location: SourceLocation) -> None:
        self.problems.append(Problem(message, location, self.node))

    def convert(self, message: Message, model: type[BaseModel], path: Path, what: str) -> dict[str, Any]:
        self.locations[path] = message.location
        by_name = {(info.alias or name): (name, info) for name, info in model.model_fields.items()}
        data: dict[str, Any] = {}
        for f in message:
            if f.name not in by_name:
                known = ", ".join(sorted(by_name)) or "none"
                self.problem(
                    f"unknown field '{f.name}' in {what}.{did_you_mean(f.name, by_name)} Known fields: {known}",
                    f.location,
                )
                continue
            key = f.name
            _, info = by_name[key]
            repeated, element = _unwrap(info.annotation)
            if repeated:
                items = data.setdefault(key, [])
                values = f.value if isinstance(f.value, list) else [f.value]
                for value in values:
                    item_path = (*path, key, len(items))
                    items.append(self.value(f, value, element, item_path, what))
                    self.locations[item_path] = f.location
                self.locations.setdefault((*path, key), f.location)
            elif key in data:
                self.problem(f"field '{key}' is given twice in {what}; it takes one value", f.location)
            else:
                data[key] = self.value(f, f.value, element, (*path, key), what)
                self.locations[(*path, key)] = f.location
        return data

    def value(self, f: Field, value: Any, element: Any, path: Path, what: str) -> Any:
        if element is Message:
            if not isinstance(value, Message):
                self.problem(f"field '{f.name}' in {what} must be a message '{{ ... }}'", f.location)
            return value
        if _is_model(element):
            if not isinstance(value, Message):
                self.problem(f"field '{f.name}' in {what} must be a message '{{ ... }}'", f.location)
                return None
            return self.convert(value, element, path, f"'{f.name}'")
        if isinstance(value, Message):
            self.problem(f"field '{f.name}' in {what} takes a value, not a message", f.location)
            return None
        return value


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validate_message(
    message: Message, model: type[ModelT], *, what: str, node: str | None = None
) -> tuple[ModelT, dict[Path, SourceLocation]]:
    """Validate ``message`` against ``model``.

    Returns the model instance and a map from field path (``("node", 0, "name")``) to where that field
    was written. Raises :class:`GraphConfigError` listing every problem, each with file:line:column.
    """
    converter = _Converter(node)
    data = converter.convert(message, model, (), what)
    if converter.problems:
        raise GraphConfigError(converter.problems)
    try:
        return model.model_validate(data), converter.locations
    except ValidationError as error:
        problems = []
        for item in error.errors():
            loc = tuple(item["loc"])
            location = message.location
            for end in range(len(loc), 0, -1):
                if loc[:end] in converter.locations:
                    location = converter.locations[loc[:end]]
                    break
            field = _format_loc(loc)
            subject = f"field '{field}' in {what}" if field else what
            problems.append(Problem(f"{subject}: {item['msg']}", location, node))
        raise GraphConfigError(problems) from None
