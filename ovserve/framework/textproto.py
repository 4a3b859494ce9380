"""A schema-less reader for the protobuf text format used by MediaPipe and OVMS graph files.

The protobuf library's own ``text_format`` needs a compiled descriptor for every message, including
every ``node_options`` type (``[type.googleapis.com/mediapipe.LLMCalculatorOptions]``) and every
extension (``[mediapipe.SyncSetInputStreamHandlerOptions.ext]``). Our options are declared as pydantic
models, not ``.proto`` files, and our load-time errors must point at a file, line and column, which
``text_format`` does not keep once it has parsed. So this module reads the text into a generic tree of
:class:`Message` and :class:`Field` objects that remember where each field was written; the graph
loader then validates that tree against declared schemas.

Accepted syntax: ``name: value`` and ``name { ... }`` / ``name: { ... }`` / ``name < ... >``; fields
separated by whitespace, ``,`` or ``;``; ``#`` comments; single- or double-quoted strings with C
escapes, adjacent strings concatenated; integers (decimal, hex, octal), floats (``1.5``, ``1e-3``,
``2.5f``, ``inf``, ``nan``), identifiers (``true``, enum names); lists ``[1, 2]``; extension and Any
names in brackets, with spaces allowed around the dots and slash.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = [
    "Field",
    "Identifier",
    "Message",
    "SourceLocation",
    "TextProtoSyntaxError",
    "Value",
    "parse_text_proto",
]


@dataclass(frozen=True, slots=True)
class SourceLocation:
    """Where something was written: ``file:line:column`` (1-based)."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class Identifier(str):
    """An unquoted word in value position: ``true``, ``false``, an enum name."""

    __slots__ = ()


Value = "str | int | float | Identifier | Message | list[str | int | float | Identifier]"


@dataclass(slots=True)
class Field:
    """One ``name: value`` or ``name { ... }`` occurrence.

    ``name`` is the field name, or for an extension / ``Any`` field the bracketed name with its
    spaces removed, e.g. ``[type.googleapis.com/mediapipe.LLMCalculatorOptions]``.
    """

    name: str
    value: str | int | float | Message | list
    location: SourceLocation

    @property
    def is_extension(self) -> bool:
        return self.name.startswith("[")

    @property
    def type_name(self) -> str:
        """For an extension or Any field, the message type it names (``mediapipe.LLMCalculatorOptions``).

        The ``type.googleapis.com/`` prefix of Any and the ``.ext`` suffix of MediaPipe's extension
        convention are removed; an ordinary field returns its own name.
        """
        if not self.is_extension:
            return self.name
        name = self.name[1:-1]
        if "/" in name:
            name = name.rsplit("/", 1)[1]
        if name.endswith(".ext"):
            name = name[: -len(".ext")]
        return name


@dataclass(slots=True)
class Message:
    """A message body: its fields in the order written, and where it starts."""

    location: SourceLocation
    fields: list[Field] = field(default_factory=list)

    def all(self, name: str) -> list[Field]:
        """Every occurrence of the field ``name`` (a repeated field), in order."""
        return [f for f in self.fields if f.name == name]

    def first(self, name: str) -> Field | None:
        """The first occurrence of ``name``, or ``None``."""
        for f in self.fields:
            if f.name == name:
                return f
        return None

    def __iter__(self) -> Iterator[Field]:
        return iter(self.fields)


class TextProtoSyntaxError(ValueError):
    """The text is not valid protobuf text format; ``str()`` starts with ``file:line:column``."""

    def __init__(self, message: str, location: SourceLocation) -> None:
        super().__init__(f"{location}: {message}")
        self.location = location
        self.reason = message


_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r\f\v]+)
  | (?P<nl>\n)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<number>[-+]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?[fF]?)(?![\w.]))
  | (?P<ident>[-+]?[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[{}<>\[\]:,;/.])
  | (?P<unterminated>["'])
    """,
    re.VERBOSE,
)

_ESCAPES = {
    "n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
    "\\": "\\", "'": "'", '"': '"', "?": "?",
}  # fmt: skip
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)")
_FLOAT_WORDS = {"inf": float("inf"), "infinity": float("inf"), "nan": float("nan")}


@dataclass(slots=True)
class _Token:
    kind: str
    text: str
    location: SourceLocation


def _tokenize(text: str, filename: str) -> list[_Token]:
    tokens: list[_Token] = []
    line, line_start, pos = 1, 0, 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        location = SourceLocation(filename, line, pos - line_start + 1)
        if match is None:
            raise TextProtoSyntaxError(f"unexpected character {text[pos]!r}", location)
        kind = match.lastgroup or ""
        if kind == "unterminated":
            raise TextProtoSyntaxError("string is not closed on the same line", location)
        if kind == "nl":
            line, line_start = line + 1, match.end()
        elif kind not in ("ws", "comment"):
            tokens.append(_Token(kind, match.group(), location))
        pos = match.end()
    tokens.append(_Token("end", "", SourceLocation(filename, line, pos - line_start + 1)))
    return tokens


def _unescape(body: str, location: SourceLocation) -> str:
    def replace(match: re.Match[str]) -> str:
        code = match.group(1)
        if code[0] in "xuU" and len(code) > 1:
            return chr(int(code[1:], 16))
        if code[0] in "01234567":
            return chr(int(code, 8))
        if code in _ESCAPES:
            return _ESCAPES[code]
        raise TextProtoSyntaxError(f"unknown escape '\\{code}' in string", location)

    return _ESCAPE.sub(replace, body)


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    @property
    def current(self) -> _Token:
        return self.tokens[self.pos]

    def advance(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def error(self, message: str, token: _Token | None = None) -> TextProtoSyntaxError:
        token = token or self.current
        found = "the end of the file" if token.kind == "end" else repr(token.text)
        return TextProtoSyntaxError(f"{message}, found {found}", token.location)

    def accept(self, text: str) -> bool:
        if self.current.kind == "punct" and self.current.text == text:
            self.pos += 1
            return True
        return False

    def expect(self, text: str, what: str) -> None:
        if not self.accept(text):
            raise self.error(f"expected {what}")

    def parse_fields(self, location: SourceLocation, closing: str | None) -> Message:
        message = Message(location)
        while True:
            token = self.current
            if closing is not None and token.kind == "punct" and token.text == closing:
                self.pos += 1
                return message
            if token.kind == "end":
                if closing is None:
                    return message
                raise self.error(f"expected '{closing}' to close the message opened at {location}")
            message.fields.append(self.parse_field())
            if not self.accept(","):
                self.accept(";")

    def parse_field_name(self) -> str:
        token = self.current
        if token.kind == "ident" and token.text[0] not in "+-":
            self.pos += 1
            return token.text
        if self.accept("["):
            parts: list[str] = []
            while not self.accept("]"):
                part = self.advance()
                if part.kind == "ident" or (part.kind == "punct" and part.text in "./"):
                    parts.append(part.text)
                else:
                    raise self.error("expected an extension or type name inside '[...]'", part)
            if not parts:
                raise self.error("expected a type name inside '[...]'")
            return "[" + "".join(parts) + "]"
        raise self.error("expected a field name")

    def parse_field(self) -> Field:
        location = self.current.location
        name = self.parse_field_name()
        has_colon = self.accept(":")
        token = self.current
        if token.kind == "punct" and token.text in "{<":
            self.pos += 1
            body = self.parse_fields(token.location, "}" if token.text == "{" else ">")
            return Field(name, body, location)
        if not has_colon:
            raise self.error(f"expected ':' or '{{' after field name '{name}'")
        if self.accept("["):
            values: list = []
            if not self.accept("]"):
                while True:
                    values.append(self.parse_scalar())
                    if self.accept("]"):
                        break
                    self.expect(",", "',' or ']' in the list")
            return Field(name, values, location)
        return Field(name, self.parse_scalar(), location)

    def parse_scalar(self) -> str | int | float:
        token = self.current
        if token.kind == "string":
            parts = []
            while self.current.kind == "string":
                string = self.advance()
                parts.append(_unescape(string.text[1:-1], string.location))
            return "".join(parts)
        if token.kind == "number":
            self.pos += 1
            return _number(token.text)
        if token.kind == "ident":
            self.pos += 1
            word = token.text.lstrip("+-").lower()
            if word in _FLOAT_WORDS:
                value = _FLOAT_WORDS[word]
                return -value if token.text.startswith("-") else value
            if token.text[0] in "+-":
                raise self.error("expected a number after the sign", token)
            return Identifier(token.text)
        raise self.error("expected a value (string, number, identifier, or '{')")


def _number(text: str) -> int | float:
    body = text.lstrip("+-")
    sign = -1 if text.startswith("-") else 1
    if body[:2].lower() == "0x":
        return sign * int(body, 16)
    if body.endswith(("f", "F")) and body[:2].lower() != "0x":
        return sign * float(body[:-1])
    if any(c in body for c in ".eE"):
        return sign * float(body)
    if len(body) > 1 and body.startswith("0"):
        return sign * int(body, 8)
    return sign * int(body)


def parse_text_proto(text: str, filename: str = "<string>") -> Message:
    """Parse protobuf text format into a :class:`Message` tree.

    Raises :class:`TextProtoSyntaxError` naming ``filename:line:column`` on the first syntax error.
    """
    parser = _Parser(_tokenize(text, filename))
    return parser.parse_fields(SourceLocation(filename, 1, 1), closing=None)
