"""Cohere's rerank API (as OVMS serves it at ``/v3/rerank``) over an embedding model: the relevance of a document
is the cosine similarity of its embedding and the query's, from -1 to 1. No cross-encoder can be shipped from
PyPI; a bi-encoder's cosine is the score this model was trained to give."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ovserve.calculators.embeddings.schema import MAX_TEXT_CHARS


class RerankDocument(BaseModel):
    """A document as an object: Cohere's ``{"text": ...}``."""

    model_config = ConfigDict(extra="forbid")

    text: str


class RerankRequest(BaseModel):
    """``POST /v3/rerank``: a query, the documents to order (strings or ``{text}``), how many to return, and
    whether to echo them."""

    model_config = ConfigDict(extra="forbid")

    model: str
    query: Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)]
    documents: Annotated[list[str | RerankDocument], Field(min_length=1, max_length=10000)]
    top_n: int | None = Field(None, ge=1)
    return_documents: bool = False

    @field_validator("documents")
    @classmethod
    def _no_empty_document(cls, documents: list[str | RerankDocument]) -> list[str | RerankDocument]:
        texts = [d if isinstance(d, str) else d.text for d in documents]
        if any(not text for text in texts):
            raise ValueError("a document is empty")
        if any(len(text) > MAX_TEXT_CHARS for text in texts):
            raise ValueError(f"a document is longer than {MAX_TEXT_CHARS} characters")
        return documents

    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


def rerank_response(request: RerankRequest, vectors: np.ndarray, tokens: int) -> dict[str, Any]:
    """``vectors``: the query's embedding, then each document's, all of length 1."""
    scores = vectors[1:] @ vectors[0]
    order = np.argsort(-scores, kind="stable")[: request.top_n or len(scores)]
    texts = request.texts()
    results = []
    for index in order:
        result: dict[str, Any] = {"index": int(index), "relevance_score": float(scores[index])}
        if request.return_documents:
            result["document"] = {"text": texts[index]}
        results.append(result)
    return {"id": f"rerank-{uuid.uuid4().hex}", "model": request.model, "results": results,
            "usage": {"total_tokens": tokens}}
