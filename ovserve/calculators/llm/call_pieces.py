"""Tool calls as they stream: which calls an answer has made so far, and the pieces not yet sent.

The incremental parsers (:mod:`.json_call_scanner`, :mod:`.pythonic_call_scanner`) report what they find here;
the tool-call node sends the pieces (OpenAI's ``delta.tool_calls``) and, when the answer ends, the whole calls,
whose ``arguments`` are exactly their pieces joined.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from ovserve.calculators.llm.types import ToolCall, ToolCallPiece


def new_call_id() -> str:
    """An OpenAI-style call id (``call_`` and 24 hex digits)."""
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass
class _Call:
    id: str
    name: str | None = None
    #: Argument text found before the call was confirmed (held until it is).
    held: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    #: The call is known to be one (its name, and its arguments' start, were seen): its pieces go out.
    confirmed: bool = False
    #: Its place among the confirmed calls (OpenAI's ``index``), once confirmed.
    index: int = -1


class CallPieces:
    """The calls of one answer, in order. A call is opened when its object starts, gets its name and
    arguments as they are read, and is *confirmed* once it is surely a call (its pieces are sent from then
    on); a call never confirmed sends nothing and is not one of :meth:`calls`."""

    def __init__(self, max_calls: int | None = None) -> None:
        self.max_calls = max_calls
        self._calls: list[_Call] = []
        self._pieces: list[ToolCallPiece] = []

    def open(self) -> int | None:
        """A new call starts; its number, or ``None`` when the answer may make no more (then ignore it)."""
        if self.max_calls is not None and self._confirmed() >= self.max_calls:
            return None
        self._calls.append(_Call(new_call_id()))
        return len(self._calls) - 1

    def name(self, number: int, name: str) -> None:
        """The call's name (a name written again once the call went out is not taken: its first piece named it)."""
        if not self._calls[number].confirmed:
            self._calls[number].name = name

    def arguments(self, number: int, text: str) -> None:
        """More of a call's arguments' JSON text: sent when the call is confirmed, held until then."""
        if not text:
            return
        call = self._calls[number]
        if not call.confirmed:
            call.held.append(text)
            return
        call.sent.append(text)
        last = self._pieces[-1] if self._pieces else None
        if last is not None and last.index == call.index:
            self._pieces[-1] = ToolCallPiece(call.index, last.arguments + text, last.id, last.name)
        else:
            self._pieces.append(ToolCallPiece(call.index, text))

    def confirm(self, number: int) -> None:
        """The call is surely one: its id and name go out, with the arguments read so far."""
        call = self._calls[number]
        if call.confirmed or call.name is None:
            return
        if self.max_calls is not None and self._confirmed() >= self.max_calls:
            return
        call.index = self._confirmed()
        call.confirmed = True
        self._pieces.append(ToolCallPiece(call.index, "", call.id, call.name))
        held, call.held = "".join(call.held), []
        self.arguments(number, held)

    def confirm_cut(self) -> None:
        """The answer was cut short inside its last call: that call, if it has its name, is the answer's, with the
        arguments written so far (as OpenAI returns such a call). Earlier calls that never confirmed stay out."""
        if self._calls and self._calls[-1].name is not None:
            self.confirm(len(self._calls) - 1)

    def _confirmed(self) -> int:
        return sum(c.confirmed for c in self._calls)

    def take(self) -> tuple[ToolCallPiece, ...]:
        """The pieces found since the last call, to send now."""
        pieces, self._pieces = tuple(self._pieces), []
        return pieces

    def add_whole(self, calls: tuple[ToolCall, ...]) -> None:
        """Calls found only when the answer was whole (by a format's whole-answer parser): each goes out as one
        piece."""
        for call in calls:
            index = self._confirmed()
            self._calls.append(_Call(call.id, call.name, sent=[call.arguments], confirmed=True, index=index))
            self._pieces.append(ToolCallPiece(index, call.arguments, call.id, call.name))

    def calls(self) -> tuple[ToolCall, ...]:
        """The confirmed calls, each with the arguments its pieces sent."""
        confirmed = sorted((c for c in self._calls if c.confirmed), key=lambda c: c.index)
        return tuple(ToolCall(c.id, c.name or "", "".join(c.sent)) for c in confirmed)

    @property
    def any_confirmed(self) -> bool:
        return self._confirmed() > 0
