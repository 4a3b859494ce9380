"""The OpenAI embeddings request, declared."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

#: No input string may be longer (it would take the tokenizer seconds, for a model that reads 256 tokens).
MAX_TEXT_CHARS = 1_000_000

TokenIds = Annotated[list[Annotated[StrictInt, Field(ge=0)]], Field(min_length=1)]


class EmbeddingRequest(BaseModel):
    """``POST /v3/embeddings``: ``input`` is a string, a list of strings, a list of token ids, or a list of
    token-id lists (OpenAI's four forms); at most 2048 inputs, as OpenAI allows."""

    model_config = ConfigDict(extra="forbid")

    model: str
    input: str | Annotated[list[str], Field(min_length=1, max_length=2048)] | TokenIds | Annotated[
        list[TokenIds], Field(min_length=1, max_length=2048)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _text_within_reason(cls, value: object) -> object:
        texts = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        if any(isinstance(text, str) and not text for text in texts):
            raise ValueError("an input string is empty; embeddings need text")
        if any(isinstance(text, str) and len(text) > MAX_TEXT_CHARS for text in texts):
            raise ValueError(f"an input string is longer than {MAX_TEXT_CHARS} characters")
        return value

    def texts_and_ids(self) -> tuple[list[str], list[list[int]]]:
        """(the texts to tokenize, the token-id lists given as they are): one of the two is empty."""
        if isinstance(self.input, str):
            return [self.input], []
        if self.input and isinstance(self.input[0], int):
            return [], [list(self.input)]  # type: ignore[arg-type]
        if self.input and isinstance(self.input[0], list):
            return [], [list(ids) for ids in self.input]  # type: ignore[union-attr]
        return list(self.input), []  # type: ignore[arg-type]
