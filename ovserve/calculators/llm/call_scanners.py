"""The incremental tool-call readers of each format (:func:`scanner_for`): the JSON formats through
:class:`~.json_call_scanner.JsonCallScanner`, Mistral's ``[TOOL_CALLS]name[ARGS]{...}`` and the pythonic
``[name(key=value, ...)]`` through readers of their own.

A reader is fed the part of an answer from where a call may start (the format's marker on) and reports the calls
it finds to :class:`~.call_pieces.CallPieces`.
"""

from __future__ import annotations

import ast
import json
from typing import Protocol

from ovserve.calculators.llm.call_pieces import CallPieces
from ovserve.calculators.llm.json_call_scanner import JsonCallScanner, Layout


class CallScanner(Protocol):
    """Reads an answer's calls as its text arrives."""

    #: The answer is surely in the call syntax (so cut short, it is no content).
    saw_calls: bool

    def feed(self, text: str) -> str:
        """Read more of the answer (the return value is for readers that nest others)."""
        ...

    def take_content(self) -> str:
        """Content the format carries inside its syntax (the generic ``{"content": ...}``), read since last asked."""
        ...

    @property
    def in_content(self) -> bool:
        """The answer is content written in the format's syntax (then it is no call)."""
        ...


class _NoContent:
    saw_calls = False

    def take_content(self) -> str:
        return ""

    @property
    def in_content(self) -> bool:
        return False


class MistralCallScanner(_NoContent):
    """``[TOOL_CALLS] [{"name": ..., "arguments": {...}}, ...]``, or ``[TOOL_CALLS]name[ARGS]{...}`` repeated."""

    MARKER = "[TOOL_CALLS]"
    ARGS = "[ARGS]"

    def __init__(self, pieces: CallPieces) -> None:
        self.pieces = pieces
        self.saw_calls = True  # its marker is one special token: nothing else writes it
        self.pending = ""
        self.state = "marker"
        self.json: JsonCallScanner | None = None

    def feed(self, text: str) -> str:
        self.pending += text
        while self.pending and self.state != "done":
            if not self._step():
                break
        return ""

    def _step(self) -> bool:
        """Read what the state allows; whether to go on."""
        if self.state in ("array", "arguments"):
            assert self.json is not None
            rest, self.pending = self.json.feed(self.pending), ""
            if self.state == "arguments" and self.json.ended:
                self.pending, self.state = rest, "marker"
            return bool(self.pending)
        stripped = self.pending.lstrip()
        if self.state == "marker":
            if not stripped.startswith(self.MARKER):
                if not self.MARKER.startswith(stripped):
                    self.state = "done"
                return False
            self.pending, self.state = stripped[len(self.MARKER):], "kind"
        elif self.state == "kind":
            if not stripped:
                return False
            if stripped[0] == "[":
                self.json, self.state, self.pending = JsonCallScanner(self.pieces, Layout.ARRAY), "array", stripped
            else:
                self.state, self.pending = "name", stripped
        else:  # the name, up to [ARGS]
            name, found, rest = self.pending.partition(self.ARGS)
            if not found:
                return False
            call = self.pieces.open()
            if call is not None:
                self.pieces.name(call, name.strip())
            self.json = JsonCallScanner(self.pieces, Layout.ARGUMENTS, call)
            self.state, self.pending = "arguments", rest
        return True


class PythonicCallScanner(_NoContent):
    """``[get_weather(city="Paris"), ...]``: each call goes out once its argument list has closed, its arguments
    converted to JSON (so that what goes out is always a whole JSON object). An argument that is not a keyword
    with a Python literal stops the reading; the whole-answer parser decides about the answer then."""

    def __init__(self, pieces: CallPieces) -> None:
        self.pieces = pieces
        self.text = ""
        self.state = "start"
        self.start = 0
        self.depth = 0
        self.quote: str | None = None
        self.escape = False
        self.call: int | None = None
        self.arguments: list[str] = []

    def feed(self, text: str) -> str:
        begin = len(self.text)
        self.text += text
        for position in range(begin, len(self.text)):
            if self.state == "done":
                break
            self._read(position, self.text[position])
        return ""

    def _read(self, position: int, char: str) -> None:
        if self.state == "start":
            if char == "[":
                self.state = "between"
        elif self.state == "between":
            if char == "]":
                self.state = "done"
            elif char.isidentifier():
                self.state, self.start = "name", position
            elif char not in " \t\r\n,":
                self.state = "done"
        elif self.state == "name":
            if char == "(":
                self._open(self.text[self.start:position].strip())
                self.state, self.start, self.depth, self.arguments = "arguments", position + 1, 0, []
            elif not (char.isalnum() or char in "_."):
                self.state = "done"
        else:
            self._read_argument(position, char)

    def _open(self, name: str) -> None:
        self.call = self.pieces.open()
        if self.call is not None:
            self.pieces.name(self.call, name)

    def _read_argument(self, position: int, char: str) -> None:
        if self.quote is not None:
            if self.escape:
                self.escape = False
            elif char == "\\":
                self.escape = True
            elif char == self.quote:
                self.quote = None
        elif char in "'\"":
            self.quote = char
        elif char in "([{":
            self.depth += 1
        elif char in ")]}" and self.depth:
            self.depth -= 1
        elif char == "=" and not self.depth and self.text[self.start:position].strip().isidentifier():
            self.saw_calls = True  # name(key=: surely a call
        elif char == "," and not self.depth:
            self._argument(self.text[self.start:position], last=False)
            self.start = position + 1
        elif char == ")":
            self._argument(self.text[self.start:position], last=True)
            if self.state != "done":  # a bad argument ends the reading
                self.state = "between"

    def _argument(self, source: str, last: bool) -> None:
        """One ``key=value`` of the call read; at the end of its list, the call goes out whole, as JSON."""
        source = source.strip()
        if source:
            try:
                (keyword,) = ast.parse(f"f({source})", mode="eval").body.keywords  # type: ignore[attr-defined]
                if keyword.arg is None:
                    raise ValueError("**kwargs")
                value = json.dumps(ast.literal_eval(keyword.value), ensure_ascii=False, allow_nan=False)
            except Exception:  # not a literal, not one keyword, not JSON-able: the whole-answer parser decides
                self.state = "done"
                return
            self.arguments.append(f"{json.dumps(keyword.arg)}: {value}")
        if last and self.call is not None:
            self.pieces.arguments(self.call, "{" + ", ".join(self.arguments) + "}")
            self.pieces.confirm(self.call)


def scanner_for(parser: str, pieces: CallPieces) -> CallScanner:
    """The incremental reader of a tool-call format of :mod:`.tool_parsers`."""
    if parser == "mistral":
        return MistralCallScanner(pieces)
    if parser == "pythonic":
        return PythonicCallScanner(pieces)
    layout = {"generic": Layout.GENERIC, "phi4": Layout.ARRAY}.get(parser, Layout.OBJECTS)
    scanner = JsonCallScanner(pieces, layout)
    if parser == "phi4":
        return _AfterMarker(scanner, "functools")
    return scanner


class _AfterMarker(_NoContent):
    """A JSON reader fed what follows a marker that holds JSON's own brackets or none (phi4's ``functools``)."""

    def __init__(self, scanner: JsonCallScanner, marker: str) -> None:
        self.scanner = scanner
        self.marker = marker
        self.pending: str | None = ""

    @property
    def saw_calls(self) -> bool:
        """A call's name was read (``functools`` alone is a word of prose as well)."""
        return self.scanner.saw_calls

    def feed(self, text: str) -> str:
        if self.pending is None:
            return self.scanner.feed(text)
        self.pending += text
        _, found, after = self.pending.partition(self.marker)
        if found:
            self.pending = None
            return self.scanner.feed(after)
        return ""
