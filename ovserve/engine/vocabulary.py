"""Fast detokenization for byte-level BPE models: a table of each token's bytes, checked at load.

Decoding a token with the OpenVINO detokenizer is one model inference (~0.2 ms, and several ms of
spinning threads with default settings); for a byte-level BPE vocabulary (GPT-2 style: Llama 3,
Qwen, SmolLM, ...) text is just the concatenation of each token's bytes. The table is built from the
model's own vocabulary and *verified* against the OpenVINO detokenizer: every single token, and
sample sequences, must decode the same. Any difference and the caller falls back to OpenVINO.
"""

from __future__ import annotations

import codecs
import json
import logging
import random
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from ovserve.engine.gguf import read_gguf_metadata
from ovserve.engine.settings import ModelFiles

log = logging.getLogger("ovserve.engine")

_GGUF_TOKENS = "tokenizer.ggml.tokens"
_GGUF_TYPES = "tokenizer.ggml.token_type"
_GGUF_USER_DEFINED = 4
_SAMPLE_SEQUENCES = 300


@cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's reversible byte ↔ printable-character map, character → byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    characters = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            characters.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, characters, strict=True)}


def _token_bytes(token: str) -> bytes | None:
    decoder = _byte_decoder()
    try:
        return bytes(decoder[ch] for ch in token)
    except KeyError:
        return None  # not a byte-level token (added tokens are literal text)


def vocabulary_bytes(model: ModelFiles) -> list[bytes] | None:
    """Each token's bytes, from the GGUF vocabulary or an IR folder's tokenizer.json (byte-level BPE
    only); ``None`` when the model's vocabulary is of another kind or not on disk."""
    if model.kind == "gguf":
        metadata = read_gguf_metadata(model.path, arrays=(_GGUF_TOKENS, _GGUF_TYPES))
        if metadata.get("tokenizer.ggml.model") != "gpt2" or _GGUF_TOKENS not in metadata:
            return None
        types = metadata.get(_GGUF_TYPES) or [1] * len(metadata[_GGUF_TOKENS])
        table = []
        for token, kind in zip(metadata[_GGUF_TOKENS], types, strict=False):
            as_bytes = token.encode() if kind == _GGUF_USER_DEFINED else _token_bytes(token)
            table.append(as_bytes if as_bytes is not None else token.encode())
        return table
    return _tokenizer_json_bytes(model.path / "tokenizer.json")


def _tokenizer_json_bytes(path: Path) -> list[bytes] | None:
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    model = spec.get("model") or {}
    decoder = spec.get("decoder") or {}
    if model.get("type") != "BPE" or decoder.get("type") != "ByteLevel":
        return None
    vocab: dict[str, int] = {**model.get("vocab", {}), **{t["content"]: t["id"] for t in spec.get("added_tokens", [])}}
    table: list[bytes] = [b""] * (max(vocab.values(), default=-1) + 1)
    added = {t["content"] for t in spec.get("added_tokens", [])}
    for token, index in vocab.items():
        as_bytes = token.encode() if token in added else _token_bytes(token)
        table[index] = as_bytes if as_bytes is not None else token.encode()
    return table


def verified_byte_table(ov_tokenizer: Any, vocabulary: list[bytes], seed: int = 0) -> list[bytes] | None:
    """The bytes each token shows when decoded (special tokens show none), or ``None`` if concatenating
    them would not reproduce the OpenVINO detokenizer exactly."""
    ids = [[i] for i in range(len(vocabulary))]
    shown = ov_tokenizer.decode(ids, skip_special_tokens=True)
    raw = ov_tokenizer.decode(ids, skip_special_tokens=False)
    table: list[bytes] = []
    for index, (text, with_special) in enumerate(zip(shown, raw, strict=True)):
        if text:
            # A token may end inside a character: its complete part shows now, the rest later.
            if text != vocabulary[index].decode("utf-8", errors="ignore"):
                log.info("fast detokenizer disabled: token %d decodes to %r, the vocabulary says %r",
                         index, text, vocabulary[index])
                return None
            table.append(vocabulary[index])
        elif with_special:
            table.append(b"")  # a special token: not shown
        else:
            table.append(vocabulary[index])  # part of a character: shown once the rest arrives
    rng = random.Random(seed)
    normal = [i for i, (text, raw_text) in enumerate(zip(shown, raw, strict=True)) if text or not raw_text]
    sequences = [[rng.choice(normal) for _ in range(rng.randint(2, 12))] for _ in range(_SAMPLE_SEQUENCES)]
    expected = ov_tokenizer.decode(sequences, skip_special_tokens=True)
    for sequence, text in zip(sequences, expected, strict=True):
        ours = b"".join(table[i] for i in sequence).decode("utf-8", errors="ignore")
        if ours != text:
            log.info("fast detokenizer disabled: %s decodes to %r, the byte table gives %r", sequence, text, ours)
            return None
    return table


class ByteTableDetokenizer:
    """Incremental decoding with a verified byte table: bytes of an unfinished character are held
    until the rest arrives (an incremental UTF-8 decoder does exactly that)."""

    __slots__ = ("_decoder", "_table")

    def __init__(self, table: list[bytes]) -> None:
        self._table = table
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")

    def push(self, token_ids: Sequence[int]) -> str:
        table = self._table
        size = len(table)
        return self._decoder.decode(b"".join(table[i] for i in token_ids if 0 <= i < size))
