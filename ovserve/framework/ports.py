"""Port declarations: the typed, tagged inputs and outputs a calculator or resource offers.

Ports are class attributes::

    class Uppercase(Calculator):
        TEXT = Input(str, doc="text to convert")
        UPPER = Output(str)

The attribute name is the TAG unless ``tag=`` says otherwise. The graph config connects streams to
tags (``input_stream: "TEXT:user_text"``); the calculator only ever knows its tags.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any


class PortKind(str, Enum):
    INPUT = "input_stream"
    OUTPUT = "output_stream"
    SIDE_INPUT = "input_side_packet"
    SIDE_OUTPUT = "output_side_packet"


@dataclass(frozen=True, slots=True)
class Port:
    """A declared port. ``multiple`` ports take indexes ``TAG:0:a``, ``TAG:1:b``, ...; ``tag=""`` is
    an untagged port (bare stream names in the config)."""

    kind: PortKind
    type: Any
    tag: str | None = None
    optional: bool = False
    multiple: bool = False
    doc: str = ""

    def named(self, tag: str) -> Port:
        return replace(self, tag=tag)

    @property
    def type_name(self) -> str:
        return type_name(self.type)


def Input(type: Any = Any, *, tag: str | None = None, optional: bool = False,
          multiple: bool = False, doc: str = "") -> Port:
    """An input stream: packets arrive here and ``process`` is called with them."""
    return Port(PortKind.INPUT, type, tag, optional, multiple, doc)


def Output(type: Any = Any, *, tag: str | None = None, optional: bool = False,
           multiple: bool = False, doc: str = "") -> Port:
    """An output stream: the calculator sends packets here with ``ctx.send``. Outputs are optional
    to connect unless ``optional=False`` is meaningful to the calculator; unconnected ones are dropped."""
    return Port(PortKind.OUTPUT, type, tag, optional, multiple, doc)


def SideInput(type: Any = Any, *, tag: str | None = None, optional: bool = False,
              doc: str = "") -> Port:
    """A side packet read by the calculator: a resource built once when the graph loads."""
    return Port(PortKind.SIDE_INPUT, type, tag, optional, False, doc)


def SideOutput(type: Any = Any, *, tag: str | None = None, doc: str = "") -> Port:
    """A side packet a :class:`~ovserve.framework.calculator.Resource` provides when the graph loads."""
    return Port(PortKind.SIDE_OUTPUT, type, tag, True, False, doc)


def type_name(tp: Any) -> str:
    """A readable name for a port type: ``str``, ``list[int]``, ``ovserve.engine.EngineClient``."""
    if tp is Any:
        return "Any"
    if isinstance(tp, type) and not typing.get_args(tp):
        module = tp.__module__
        return tp.__qualname__ if module == "builtins" else f"{module}.{tp.__qualname__}"
    return str(tp).replace("typing.", "")


_UNIONS = (typing.Union, types.UnionType)


def types_compatible(produced: Any, consumed: Any) -> bool:
    """Whether packets of type ``produced`` may flow into a port that takes ``consumed``.

    ``Any`` on either side matches; classes match by subclass; ``X | Y`` consumers accept any member;
    generics (``list[int]``) match when their origins match and their arguments match.
    """
    if produced is Any or consumed is Any or produced == consumed:
        return True
    consumed_origin = typing.get_origin(consumed)
    if consumed_origin in _UNIONS:
        members = typing.get_args(consumed)
        produced_members = typing.get_args(produced) if typing.get_origin(produced) in _UNIONS else (produced,)
        return all(any(types_compatible(p, c) for c in members) for p in produced_members)
    produced_origin = typing.get_origin(produced) or produced
    consumed_origin = consumed_origin or consumed
    if not (isinstance(produced_origin, type) and isinstance(consumed_origin, type)):
        return False
    if not issubclass(produced_origin, consumed_origin):
        return False
    consumed_args = typing.get_args(consumed)
    produced_args = typing.get_args(produced)
    if not consumed_args or not produced_args:
        return True
    return len(consumed_args) == len(produced_args) and all(
        types_compatible(p, c) for p, c in zip(produced_args, consumed_args, strict=True)
    )


@dataclass(frozen=True)
class Contract:
    """Every port a class declares, by kind and tag."""

    inputs: dict[str, Port]
    outputs: dict[str, Port]
    side_inputs: dict[str, Port]
    side_outputs: dict[str, Port]

    def of(self, kind: PortKind) -> dict[str, Port]:
        return {
            PortKind.INPUT: self.inputs,
            PortKind.OUTPUT: self.outputs,
            PortKind.SIDE_INPUT: self.side_inputs,
            PortKind.SIDE_OUTPUT: self.side_outputs,
        }[kind]

    @classmethod
    def collect(cls, owner: type) -> Contract:
        """Gather the :class:`Port` attributes of ``owner`` and its bases (subclasses override)."""
        found: dict[PortKind, dict[str, Port]] = {kind: {} for kind in PortKind}
        for klass in reversed(owner.__mro__):
            for attr, value in vars(klass).items():
                if isinstance(value, Port):
                    port = value if value.tag is not None else value.named(attr)
                    found[port.kind][port.tag or ""] = port
        return cls(found[PortKind.INPUT], found[PortKind.OUTPUT],
                   found[PortKind.SIDE_INPUT], found[PortKind.SIDE_OUTPUT])
