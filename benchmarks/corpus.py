"""Deterministic long text for prompts, from text shipped with Python itself, and token counting.

The text is CPython's own help topics (``pydoc_data.topics``, the English text ``help("if")``
prints), joined in sorted topic order with whitespace collapsed and heading underlines left out:
about 65,000 words, the same on every machine with the same Python version, and nothing to
download. Prompts are cut from it by words (:func:`words`) or, where an exact token count matters,
by token ids of the model's own tokenizer through the server's ``POST /v3/tokenize`` and
``POST /v3/detokenize`` (:class:`ServerTokenizer`): tokenize the text once (in pieces, as the
server answers at most the model's context), slice the ids, detokenize the slice.
"""

from __future__ import annotations

import functools
import json
import re
import urllib.request
from collections.abc import Sequence

from benchmarks.workload import MODEL_NAME

#: The reStructuredText heading underlines of the help topics ("*****", "=====") are left out.
_RULE = re.compile(r"[*=~^#-]{3,}")


@functools.lru_cache(maxsize=1)
def corpus_words() -> tuple[str, ...]:
    """Every word of the shipped text, in order (whitespace collapsed)."""
    from pydoc_data.topics import topics

    text = " ".join(topics[name] for name in sorted(topics))
    return tuple(word for word in text.split() if not _RULE.fullmatch(word))


def words(count: int, start: int = 0) -> str:
    """``count`` consecutive words of the corpus from word ``start`` on (wrapping around at the end)."""
    pool = corpus_words()
    begin = start % len(pool)
    taken = list(pool[begin:begin + count])
    while len(taken) < count:
        taken.extend(pool[: count - len(taken)])
    return " ".join(taken)


class ServerTokenizer:
    """The served model's tokenizer, over HTTP (``/tokenize`` and ``/detokenize`` under the base URL).

    Args:
        base_url: the OpenAI base URL, e.g. ``http://127.0.0.1:8000/v3``.
        model: the ``model`` field of the requests.
    """

    def __init__(self, base_url: str, model: str = MODEL_NAME, timeout_s: float = 120.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s

    def _post(self, path: str, payload: dict[str, object]) -> dict[str, object]:
        """POST JSON and return the decoded answer (raises on any HTTP error)."""
        body = json.dumps({"model": self.model, **payload}).encode()
        request = urllib.request.Request(f"{self.base_url}/{path}", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            return json.loads(response.read())

    def ids(self, text: str) -> list[int]:
        """Token ids of plain text, no special tokens."""
        answer = self._post("tokenize", {"prompt": text, "add_special_tokens": False})
        return list(answer["tokens"])  # type: ignore[arg-type]

    def text(self, ids: Sequence[int]) -> str:
        """Text of token ids."""
        return str(self._post("detokenize", {"tokens": list(ids)})["prompt"])

    def chat_count(self, messages: list[dict[str, str]]) -> int:
        """Prompt tokens of chat messages, through the chat template as a completion would count them."""
        answer = self._post("tokenize", {"messages": messages, "add_generation_prompt": True})
        return int(answer["count"])  # type: ignore[call-overload]

    def max_model_len(self) -> int | None:
        """The model's context length, as the server reports it."""
        value = self._post("tokenize", {"prompt": "x"}).get("max_model_len")
        return int(value) if value is not None else None  # type: ignore[call-overload]


class TokenSlicer:
    """The corpus as token ids of one tokenizer, cut into texts of a given number of tokens.

    Texts cut at different offsets differ from their first token on, so no two of them share a
    prefix. A slice that starts or ends inside a word may come back one or two tokens longer or
    shorter when the text is tokenized again; callers report the counts the server measured.
    """

    def __init__(self, tokenizer: ServerTokenizer, corpus_word_count: int = 40_000, piece_words: int = 2_000) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        for start in range(0, corpus_word_count, piece_words):
            piece = words(min(piece_words, corpus_word_count - start), start)
            self.ids += tokenizer.ids(piece if start == 0 else " " + piece)

    def text(self, tokens: int, offset: int) -> str:
        """About ``tokens`` tokens of text starting at token ``offset`` (wrapping around)."""
        if tokens >= len(self.ids):
            raise ValueError(f"{tokens} tokens asked for; the corpus has {len(self.ids)}")
        begin = offset % (len(self.ids) - tokens)
        return self.tokenizer.text(self.ids[begin:begin + tokens])
