"""The model's tokenizer in the HTTP process: chat templates, encoding, incremental decoding."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ovserve.engine.settings import ModelFiles
from ovserve.engine.trial_load import ModelLoadError, load_in_child_first
from ovserve.engine.vocabulary import ByteTableDetokenizer, verified_byte_table, vocabulary_bytes

log = logging.getLogger("ovserve.engine")

_COUNT_PIECE = 4000  # characters: fewer tokens than any tokenizer's maximum length, but for rare scripts
_PROBE_TOKENS = 65536


def _piece_end(text: str, start: int, size: int) -> int:
    """Where a piece of about ``size`` characters from ``start`` ends: before the last space in it, if any."""
    end = min(start + size, len(text))
    if end < len(text):
        space = text.rfind(" ", start + 1, end)
        end = space if space > start else end
    return end


class TextTokenizer:
    """Wraps ``openvino_genai.Tokenizer`` (loaded from the same files as the engine).

    Generated text is decoded with a verified byte table where the vocabulary allows it
    (:mod:`ovserve.engine.vocabulary`), else with OpenVINO's detokenizer."""

    def __init__(self, tokenizer: Any, byte_table: list[bytes] | None = None, vocab_size: int | None = None) -> None:
        self._tokenizer = tokenizer
        self._byte_table = byte_table
        self.eos_token_id = int(tokenizer.get_eos_token_id())
        self.chat_template: str = tokenizer.chat_template or ""
        #: Token ids run from 0 to ``vocab_size - 1`` (0: unknown).
        self.vocab_size = vocab_size or len(byte_table or ()) or _vocab_vector_size(tokenizer)

    @property
    def fast_detokenizer(self) -> bool:
        """Whether generated text is decoded with the byte table (no OpenVINO call per token)."""
        return self._byte_table is not None

    @classmethod
    def load(cls, model: ModelFiles, *, trial: bool = True) -> TextTokenizer:
        """Load from a ``.gguf`` or an IR folder. Blocking (seconds): call it in a thread. With ``trial``, files
        this process has not loaded before are loaded in a child process first, so that a broken file fails the
        load (:class:`~ovserve.engine.trial_load.ModelLoadError`) instead of crashing the server."""
        import openvino_genai

        if trial:
            load_in_child_first("tokenizer", model.path)

        # One thread: OpenVINO's worker threads otherwise spin for milliseconds after each call, taking
        # CPU from the engine process. A pathlib.Path is needed: a str is taken for model XML.
        tokenizer = openvino_genai.Tokenizer(Path(model.tokenizer_path), INFERENCE_NUM_THREADS=1)
        if int(tokenizer.get_eos_token_id()) < 0:  # the engine then refuses every request
            raise ModelLoadError(f"{model.path}: its tokenizer has no end-of-sequence token, which text generation "
                                 f"needs; is it the tokenizer of another kind of model?")
        vocabulary = vocabulary_bytes(model)
        table = verified_byte_table(tokenizer, vocabulary) if vocabulary else None
        log.info("tokenizer for %s: %s detokenizer", model.display_name,
                 "byte-table" if table else "OpenVINO")
        return cls(tokenizer, table, len(vocabulary) if vocabulary else None)

    def apply_chat_template(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True,
                            extra_context: dict[str, Any] | None = None,
                            tools: list[dict[str, Any]] | None = None) -> str:
        """The model's chat template applied to ``messages`` (``[{"role": ..., "content": ...}]``), with
        ``extra_context`` as more template variables (``enable_thinking``, ...) and the ``tools`` the answer
        may call."""
        return self._tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt,
                                                   tools=tools or None, extra_context=extra_context or None)

    def encode(self, text: str, add_special_tokens: bool) -> np.ndarray:
        """Token ids (int64) of ``text``."""
        tokens = self._tokenizer.encode(text, add_special_tokens=add_special_tokens)
        return np.asarray(tokens.input_ids.data[0], dtype=np.int64)

    def count_tokens(self, text: str, add_special_tokens: bool) -> int:
        """How many tokens ``text`` has, even past the length at which ``encode`` truncates."""
        return int(self.encode_whole(text, add_special_tokens).size)

    @functools.cached_property
    def truncation_length(self) -> int | None:
        """The length at which OpenVINO's tokenizer cuts its output (None: none below 65,536 tokens)."""
        probe = int(self.encode(" a" * _PROBE_TOKENS, add_special_tokens=False).size)
        return probe if probe < _PROBE_TOKENS else None

    def encode_whole(self, text: str, add_special_tokens: bool) -> np.ndarray:
        """Every token id of ``text``, even past the length at which ``encode`` truncates.

        Under that length it is ``encode``. Beyond it, the text is encoded in pieces split before a space, where
        byte-level BPE starts a new word anyway (a piece that reaches the length is split again), with the
        special tokens ``encode`` puts first. Tokenizers that add a word-start marker to each piece, or add
        special tokens at the end, may differ there from an encoding in one go by a token or so per piece."""
        ids = self.encode(text, add_special_tokens)
        cap = self.truncation_length
        if cap is None or ids.size < cap:
            return ids
        parts = [self.encode("", add_special_tokens)] if add_special_tokens else []
        start = 0
        while start < len(text):
            end = _piece_end(text, start, _COUNT_PIECE)
            parts.append(self._encode_piece(text[start:end], cap))
            start = end
        return np.concatenate(parts)

    def _encode_piece(self, piece: str, cap: int) -> np.ndarray:
        ids = self.encode(piece, add_special_tokens=False)
        if ids.size < cap or len(piece) < 2:
            return ids
        middle = _piece_end(piece, 0, len(piece) // 2)
        return np.concatenate([self._encode_piece(piece[:middle], cap), self._encode_piece(piece[middle:], cap)])

    def token_bytes(self, token_id: int) -> bytes:
        """One token's bytes (from the byte table, else its decoded text)."""
        if self._byte_table is not None and 0 <= token_id < len(self._byte_table):
            return self._byte_table[token_id]
        return self.decode([token_id], skip_special_tokens=False).encode()

    def decode(self, token_ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self._tokenizer.decode(list(token_ids), skip_special_tokens=skip_special_tokens)

    def special_tokens(self) -> dict[str, tuple[str, int] | None]:
        """The model's ``bos``, ``eos`` and ``pad`` tokens as (text, id), each ``None`` where the model has none."""
        tokens: dict[str, tuple[str, int] | None] = {}
        for name in ("bos", "eos", "pad"):
            token_id = int(getattr(self._tokenizer, f"get_{name}_token_id", lambda: -1)())
            text = getattr(self._tokenizer, f"get_{name}_token", lambda: "")()
            tokens[name] = (text, token_id) if token_id >= 0 and text else None
        return tokens

    def detokenizer(self) -> IncrementalDetokenizer | ByteTableDetokenizer:
        """A fresh incremental decoder for one generated sequence."""
        if self._byte_table is not None:
            return ByteTableDetokenizer(self._byte_table)
        return IncrementalDetokenizer(self)


def _vocab_vector_size(tokenizer: Any) -> int:
    """The vocabulary's size from OpenVINO; 0 where it cannot say (its call fails on tokens that are not
    UTF-8 on their own, as in byte-level vocabularies without a byte table)."""
    try:
        return len(tokenizer.get_vocab_vector())
    except (UnicodeDecodeError, RuntimeError):
        return 0


class IncrementalDetokenizer:
    """Turns a growing list of token ids into text deltas, never splitting a character.

    Each call decodes a short window: the tokens already shown (for context, so that spacing rules
    apply as in a full decode) and the new ones; the delta is the text the new tokens add. Bytes of a
    character that is not complete yet produce no text until the rest arrives.
    """

    def __init__(self, tokenizer: TextTokenizer) -> None:
        self._tokenizer = tokenizer
        self.token_ids: list[int] = []
        self._prefix_offset = 0  # start of the context window
        self._read_offset = 0  # tokens before this have been turned into text

    def push(self, token_ids: Sequence[int]) -> str:
        """Add generated tokens; return the text they complete (possibly empty)."""
        if not token_ids:
            return ""
        self.token_ids.extend(token_ids)
        decode = self._tokenizer.decode
        prefix_text = decode(self.token_ids[self._prefix_offset:self._read_offset])
        new_text = decode(self.token_ids[self._prefix_offset:])
        if len(new_text) <= len(prefix_text) or new_text.endswith("\ufffd"):
            return ""  # an incomplete character (or a special token): wait for more
        self._prefix_offset = self._read_offset
        self._read_offset = len(self.token_ids)
        return new_text[len(prefix_text):]
