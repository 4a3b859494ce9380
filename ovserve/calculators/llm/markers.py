"""Streaming text that may hold a marker (a stop string, ``</think>``, ``<tool_call>``): what to hold back."""

from __future__ import annotations

from collections.abc import Iterable


def split_before_partial_marker(text: str, markers: Iterable[str]) -> tuple[str, str]:
    """(the text that cannot be the start of a marker, the end of it that may be: hold that back until
    more text shows whether a marker follows)."""
    keep = 0
    for marker in markers:
        for length in range(min(len(marker) - 1, len(text)), keep, -1):
            if text.endswith(marker[:length]):
                keep = length
                break
    return (text[:len(text) - keep], text[len(text) - keep:]) if keep else (text, "")
