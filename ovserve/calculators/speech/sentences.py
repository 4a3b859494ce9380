"""Text → the pieces a speech model says one at a time: sentences, and parts of sentences too long for one call.

:class:`SentenceSplitter` is incremental: text goes in as it comes (a whole request's ``input``, or an LLM's deltas
in a voice graph), and each sentence comes out as soon as it is known to be complete, that is once the character
after its end has been seen. :func:`split_sentences` splits a whole text.

A sentence ends at ``.``, ``!``, ``?`` or ``…`` followed by white space (with any closing quotes or brackets after
the mark), at their full-width CJK forms (CJK text puts no space after them), or at a line break. A ``.`` after a
common abbreviation (``Mr.``, ``e.g.``) or a single letter (an initial) ends nothing. A piece longer than
``max_chars`` is cut at its last ``,``, ``;``, ``:`` or space before the limit (anywhere, for text without any), so
that no call reads more than the model takes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: The longest piece said in one call by default: SpeechT5 reads at most 600 tokens (a character each, and a few
#: more), and a shorter piece is stopped sooner when its client goes away.
DEFAULT_MAX_CHARS = 250

_CLOSERS = "[\"'\u201d\u2019\u300d)\\]]*"
#: A mark that ends a sentence before white space; a full-width one (CJK text has no spaces); a line break.
_END = re.compile(f"(?P<mark>[.!?\u2026]+{_CLOSERS})\\s+|(?P<cjk>[\u3002\uff01\uff1f]+{_CLOSERS})|(?P<line>\\n\\s*)")
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "cf", "no",
                            "fig", "inc", "ltd", "co", "approx", "dept", "est"})
_SOFT_BREAKS = (", ", "; ", ": ", " ")


class SentenceSplitter:
    """Splits text into sentences as it comes. Call :meth:`add` with each piece of text; it returns the sentences
    completed so far. Call :meth:`flush` at the end for the rest. Pieces come out stripped and never empty."""

    def __init__(self, max_chars: int = DEFAULT_MAX_CHARS) -> None:
        self.max_chars = max_chars
        self._buffer = ""

    def add(self, text: str) -> list[str]:
        """The sentences that ``text`` completes."""
        self._buffer += text
        pieces: list[str] = []
        start = 0
        for match in _END.finditer(self._buffer):
            kind = match.lastgroup
            end = match.start() if kind == "line" else match.end(kind)
            if kind == "mark" and _is_abbreviation(self._buffer[start:end]):
                continue
            pieces += self._cut(self._buffer[start:end])
            start = match.end()
        self._buffer = self._buffer[start:]
        while len(self._buffer) > self.max_chars:  # no end in sight: say what fits
            head, self._buffer = _soft_cut(self._buffer, self.max_chars)
            pieces += self._cut(head)
        return pieces

    def flush(self) -> list[str]:
        """Whatever is left, as the last sentence (or none)."""
        rest, self._buffer = self._buffer, ""
        return self._cut(rest)

    def _cut(self, text: str) -> list[str]:
        pieces: list[str] = []
        text = text.strip()
        while len(text) > self.max_chars:
            head, text = _soft_cut(text, self.max_chars)
            if head.strip():
                pieces.append(head.strip())
            text = text.strip()
        if text:
            pieces.append(text)
        return pieces


def _is_abbreviation(sentence: str) -> bool:
    """Whether a sentence that ends in ``.`` ends in an abbreviation or an initial, which end no sentence."""
    if not sentence.endswith("."):
        return False
    word = sentence[:-1].rsplit(None, 1)[-1].lstrip("\"'\u201c\u2018([").lower() if sentence[:-1].split() else ""
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def _soft_cut(text: str, limit: int) -> tuple[str, str]:
    """``text`` cut at its last soft break within ``limit`` characters (or at the limit): (head, rest)."""
    window = text[:limit]
    for mark in _SOFT_BREAKS:
        at = window.rfind(mark)
        if at > limit // 4:
            return text[: at + len(mark)], text[at + len(mark):]
    return text[:limit], text[limit:]


def split_sentences(text: str | Iterable[str], max_chars: int = DEFAULT_MAX_CHARS) -> list[str]:
    """A whole text (or its pieces, in order) split into what is said one call at a time."""
    splitter = SentenceSplitter(max_chars)
    pieces = [text] if isinstance(text, str) else text
    sentences = [sentence for piece in pieces for sentence in splitter.add(piece)]
    return sentences + splitter.flush()
