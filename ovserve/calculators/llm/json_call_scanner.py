"""Tool calls written as JSON, read as they stream: a character-level JSON reader that finds each call's name and
its arguments' text without waiting for the answer to end.

Where calls sit depends on the format (:class:`Layout`). A call is confirmed (its id and name go out) once its
``name`` string has ended and its ``arguments`` (or ``parameters``) object has begun; from then on its arguments'
text streams as the model writes it, byte for byte, so that the pieces join to exactly the call's arguments.
Arguments that are not an object never confirm a call: the whole-answer parser decides about it at the end.
The reader keeps its own stack (no recursion), so any nesting the model writes costs memory in proportion only.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass

from ovserve.calculators.llm.call_pieces import CallPieces

ARGUMENT_KEYS = ("arguments", "parameters")
_LITERAL_START = frozenset("-0123456789tfn")
_LITERAL_END = frozenset(",}] \t\r\n")


class Layout(enum.Enum):
    """Where the calls are in an answer."""

    #: Every top-level object is a call (hermes3 between its tags, llama3).
    OBJECTS = "objects"
    #: The objects of a top-level array (mistral's and phi4's lists).
    ARRAY = "array"
    #: ovserve's generic format: the objects of the top-level object's ``tool_calls`` array; its ``content`` string
    #: is content.
    GENERIC = "generic"
    #: The top-level object is the arguments of a call already named (mistral's ``name[ARGS]{...}``).
    ARGUMENTS = "arguments"


@dataclass
class _Frame:
    #: ``{`` or ``[``.
    kind: str
    #: What comes next: an object's ``key``, ``colon``, ``value`` or ``comma``; an array's ``value`` or ``comma``.
    expect: str
    key: str | None = None
    #: This object is a call: its number in :class:`CallPieces`.
    call: int | None = None
    named: bool = False
    arguments_seen: bool = False
    arguments_object: bool = False


_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_HEX = frozenset("0123456789abcdefABCDEF")


def decode_json_text(raw: str, final: bool = True) -> tuple[str, int]:
    """A JSON string's body (without its quotes) decoded escape by escape: (the text, how much of ``raw`` it used).

    The same text comes out however the body arrived in pieces: an escape JSON does not have stays as written, a
    lone surrogate becomes U+FFFD (it has no UTF-8), and an escape cut at the end of ``raw`` waits for the rest
    unless ``final``, when it stays as written."""
    out: list[str] = []
    position = 0
    while position < len(raw):
        backslash = raw.find("\\", position)
        if backslash < 0:
            out.append(raw[position:])
            position = len(raw)
            break
        out.append(raw[position:backslash])
        position = backslash
        used, text = _escape(raw, position)
        if used == 0:  # cut: wait for more
            break
        out.append(text)
        position += used
    if final and position < len(raw):
        out.append(raw[position:])
        position = len(raw)
    return "".join(out), position


def _escape(raw: str, at: int) -> tuple[int, str]:
    """(characters used, text) of the escape at ``at``; (0, "") when ``raw`` ends before it does."""
    code = raw[at + 1:at + 2]
    if not code:
        return 0, ""
    if code != "u":
        return 2, _ESCAPES.get(code, raw[at:at + 2])
    digits = raw[at + 2:at + 6]
    if not all(c in _HEX for c in digits):
        return 2, "\\u"
    if len(digits) < 4:
        return 0, ""
    value = int(digits, 16)
    if 0xDC00 <= value < 0xE000:
        return 6, "\ufffd"
    if not 0xD800 <= value < 0xDC00:
        return 6, chr(value)
    low = raw[at + 6:at + 12]
    if len(low) < 6 and "\\u".startswith(low[:2]) and all(c in _HEX for c in low[2:]):
        return 0, ""  # the low half may follow
    if low[:2] == "\\u" and all(c in _HEX for c in low[2:]) and 0xDC00 <= int(low[2:], 16) < 0xE000:
        return 12, chr(0x10000 + ((value - 0xD800) << 10) + (int(low[2:], 16) - 0xDC00))
    return 6, "\ufffd"


def decode_json_string(raw: str) -> str:
    """The text of a whole JSON string's body (:func:`decode_json_text`)."""
    return decode_json_text(raw)[0]


class JsonCallScanner:
    """Reads one answer's JSON calls as text arrives (:meth:`feed`), reporting them to ``pieces``; in the generic
    layout, also the ``content`` string's text (:meth:`take_content`)."""

    def __init__(self, pieces: CallPieces, layout: Layout, bare_call: int | None = None) -> None:
        self.pieces = pieces
        self.layout = layout
        self.bare_call = bare_call
        self.text = ""
        self.stack: list[_Frame] = []
        self.string_start: int | None = None
        self.string_role: str | None = None
        self.escape = False
        self.literal = False
        #: The arguments being read: (call, the stack's depth when they began, where the unsent text starts).
        self.capture: tuple[int, int, int] | None = None
        #: The generic layout's ``content`` string: where its unsent text starts, once it began.
        self.content_from: int | None = None
        self.content: list[str] = []
        #: The answer is surely in the call syntax (the generic ``tool_calls`` key, or a call's name).
        self.saw_calls = False
        #: A top-level value has ended (the ``ARGUMENTS`` layout reads one).
        self.ended = False

    def feed(self, text: str) -> str:
        """Read more of the answer; the text left unread once an ``ARGUMENTS`` layout's object has ended."""
        start = len(self.text)
        self.text += text
        for position in range(start, len(self.text)):
            if self.ended:
                rest = self.text[position:]
                self.text = self.text[:position]
                return rest
            self._read(position, self.text[position])
        if self.capture is not None:
            call, depth, sent = self.capture
            self.pieces.arguments(call, self.text[sent:])
            self.capture = (call, depth, len(self.text))
        if self.string_role == "content":
            self._send_content(len(self.text))
        return ""

    def take_content(self) -> str:
        """The generic layout's content text read since the last call."""
        content, self.content = "".join(self.content), []
        return content

    @property
    def in_content(self) -> bool:
        """The answer is the generic layout's ``{"content": ...}``."""
        return self.content_from is not None

    def _read(self, position: int, char: str) -> None:
        if self.string_start is not None:
            if self.escape:
                self.escape = False
            elif char == "\\":
                self.escape = True
            elif char == '"':
                self._end_string(position)
            return
        if self.literal:
            if char not in _LITERAL_END:
                return
            self.literal = False
            self._value_done()
        if char in " \t\r\n":
            return
        if not self.stack:
            if char in "{[":
                self._start_value(position, char)
            return
        frame = self.stack[-1]
        if frame.expect == "value":
            if char == "]" and frame.kind == "[":
                self._close(position)
            else:
                self._start_value(position, char)
        elif frame.expect == "key":
            if char == '"':
                self._start_string(position, "key")
            elif char == "}":
                self._close(position)
        elif frame.expect == "colon":
            if char == ":":
                frame.expect = "value"
        elif char == ",":
            frame.expect = "key" if frame.kind == "{" else "value"
        elif char in "}]":
            self._close(position)

    def _is_call_position(self) -> bool:
        stack = self.stack
        if self.layout is Layout.OBJECTS:
            return not stack
        if self.layout is Layout.ARRAY:
            return len(stack) == 1 and stack[0].kind == "["
        if self.layout is Layout.GENERIC:
            return (len(stack) == 2 and stack[0].kind == "{" and stack[0].key == "tool_calls"
                    and stack[1].kind == "[")
        return False

    def _start_value(self, position: int, char: str) -> None:
        parent = self.stack[-1] if self.stack else None
        role, call = None, None
        if parent is not None and parent.call is not None and parent.kind == "{":
            role = self._call_field(parent, position, char)
        elif (self.layout is Layout.GENERIC and parent is not None and len(self.stack) == 1 and parent.key == "content"
              and char == '"'):
            role, self.content_from = "content", position + 1
        elif char == "{" and self._is_call_position():
            call = self.pieces.open()
        elif self.layout is Layout.ARGUMENTS and parent is None and char == "{" and self.bare_call is not None:
            self.capture = (self.bare_call, 0, position)
            self.pieces.confirm(self.bare_call)
        if char in "{[":
            self.stack.append(_Frame(char, "key" if char == "{" else "value", call=call))
        elif char == '"':
            self._start_string(position, role)
        elif char in _LITERAL_START:
            self.literal = True
        # anything else cannot start a value: skipped, as a model's stray character

    def _call_field(self, call_frame: _Frame, position: int, char: str) -> str | None:
        """A value starts in a call object: its name, its arguments, or something else (the role of a string)."""
        assert call_frame.call is not None
        if call_frame.key == "name" and char == '"':
            return "name"
        if call_frame.key in ARGUMENT_KEYS and not call_frame.arguments_seen:
            call_frame.arguments_seen = True
            if char == "{":
                call_frame.arguments_object = True
                self.capture = (call_frame.call, len(self.stack), position)
                self._confirm(call_frame)
            elif char == '"':
                return "arguments"
        return None

    def _confirm(self, frame: _Frame) -> None:
        if frame.call is not None and frame.named and frame.arguments_object:
            self.pieces.confirm(frame.call)

    def _start_string(self, position: int, role: str | None) -> None:
        self.string_start, self.string_role, self.escape = position, role, False

    def _end_string(self, position: int) -> None:
        assert self.string_start is not None
        raw, role = self.text[self.string_start + 1:position], self.string_role
        self.string_start = self.string_role = None
        frame = self.stack[-1] if self.stack else None
        if role == "key" and frame is not None:
            frame.key, frame.expect = decode_json_string(raw), "colon"
            if self.layout is Layout.GENERIC and len(self.stack) == 1 and frame.key == "tool_calls":
                self.saw_calls = True
            return
        if role == "content":
            self._send_content(position, final=True)
        elif role == "name" and frame is not None and frame.call is not None:
            self.pieces.name(frame.call, decode_json_string(raw))
            frame.named = self.saw_calls = True
            self._confirm(frame)
        elif role == "arguments" and frame is not None and frame.call is not None:
            self._string_arguments(frame, decode_json_string(raw))
        self._value_done()

    def _string_arguments(self, frame: _Frame, arguments: str) -> None:
        """Arguments written as a JSON string holding the object (some models do): a call when it holds one."""
        try:
            is_object = isinstance(json.loads(arguments), dict)
        except (ValueError, RecursionError):
            is_object = False
        if is_object and frame.call is not None:
            self.pieces.arguments(frame.call, arguments)
            frame.arguments_object = True
            self._confirm(frame)

    def _send_content(self, end: int, final: bool = False) -> None:
        assert self.content_from is not None
        text, used = decode_json_text(self.text[self.content_from:end], final)
        if text:
            self.content.append(text)
        self.content_from += used

    def _close(self, position: int) -> None:
        self.stack.pop()
        if self.capture is not None and len(self.stack) == self.capture[1]:
            call, _, sent = self.capture
            self.pieces.arguments(call, self.text[sent:position + 1])
            self.capture = None
        self._value_done()

    def _value_done(self) -> None:
        if self.stack:
            self.stack[-1].expect = "comma"
        elif self.layout is Layout.ARGUMENTS:
            self.ended = True
