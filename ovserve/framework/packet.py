"""Packets: the immutable unit of data on a stream."""

from __future__ import annotations

from typing import Any, NamedTuple


class Packet(NamedTuple):
    """A value on a stream with its timestamp.

    Packets are immutable, and so should be the values they carry: one packet may reach several
    consumers. Timestamps are integers that strictly increase along a stream; in a request graph they
    count the items of the request (the prompt is 0, the generated deltas 0, 1, 2, ...).
    """

    value: Any
    timestamp: int
