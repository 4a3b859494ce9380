"""The requests a reranker answers and their answers: Cohere's rerank (``/rerank``, as OVMS and vLLM serve it) and
vLLM's score (``/score``)."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ovserve.calculators.embeddings.rerank import RerankRequest
from ovserve.calculators.embeddings.schema import MAX_TEXT_CHARS
from ovserve.errors import RequestError

Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)]
#: The most texts one side of a score request may hold (as many documents as a rerank request may).
MAX_TEXTS = 10_000


class CrossEncoderRerankRequest(RerankRequest):
    """``POST /v3/rerank`` on a reranker: Cohere's fields (v1 and v2 share ``query``, ``documents``, ``top_n``;
    ``return_documents`` is v1's, ``max_tokens_per_doc`` v2's). Its other fields (``rank_fields``,
    ``max_chunks_per_doc``, ``relevant_spans``) are refused by name."""

    max_tokens_per_doc: int | None = Field(None, ge=1, description="cut each document to this many tokens")
    priority: int = Field(0, description="only 0: requests are served in the order they come")

    @model_validator(mode="after")
    def _one_priority(self) -> CrossEncoderRerankRequest:
        refuse_priority(self.priority)
        return self


class ScoreRequest(BaseModel):
    """``POST /score`` (vLLM's): ``text_1`` and ``text_2`` are strings or lists of strings, paired 1:1, 1:N (the one
    ``text_1`` with each ``text_2``) or N:N (element by element)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    text_1: Text | Annotated[list[Text], Field(min_length=1, max_length=MAX_TEXTS)]
    text_2: Text | Annotated[list[Text], Field(min_length=1, max_length=MAX_TEXTS)]
    truncate_prompt_tokens: int | None = Field(None, ge=-1, description="-1: cut text_2 to fit the model")
    use_activation: bool | None = Field(None, description="only true: scores come through the model's sigmoid")
    activation: bool | None = None
    softmax: bool | None = None
    priority: int = 0

    @model_validator(mode="after")
    def _what_ovserve_does(self) -> ScoreRequest:
        queries, documents = self.texts()
        if len(queries) > 1 and len(queries) != len(documents):
            raise RequestError(f"text_1 has {len(queries)} texts and text_2 {len(documents)}: pairs are 1:1, 1:N or "
                               f"N:N (as many of each)", param="text_1", code="invalid_value")
        if self.truncate_prompt_tokens not in (None, -1):
            raise RequestError("truncate_prompt_tokens: only -1 (cut text_2 to fit the model) is supported; leave it "
                               "out to have a pair too long refused", param="truncate_prompt_tokens",
                               code="unsupported_parameter")
        for name in ("use_activation", "activation", "softmax"):
            if getattr(self, name) is False:
                raise RequestError(f"{name}: false is not supported: the pipeline gives scores after the model's "
                                   f"activation only; leave it out", param=name, code="unsupported_parameter")
        refuse_priority(self.priority)
        return self

    def texts(self) -> tuple[list[str], list[str]]:
        """(``text_1`` as a list, ``text_2`` as a list)."""
        return ([self.text_1] if isinstance(self.text_1, str) else list(self.text_1),
                [self.text_2] if isinstance(self.text_2, str) else list(self.text_2))

    def pairs(self) -> tuple[list[str], list[int], list[str]]:
        """The distinct queries, which of them each ``text_2`` goes with, and the ``text_2`` texts."""
        queries, documents = self.texts()
        if len(queries) == 1:
            return queries, [0] * len(documents), documents
        distinct: dict[str, int] = {}
        query_of = [distinct.setdefault(query, len(distinct)) for query in queries]
        return list(distinct), query_of, documents


def refuse_priority(priority: int) -> None:
    if priority != 0:
        raise RequestError("priority: only 0 is supported (requests are served in the order they come)",
                           param="priority", code="unsupported_parameter")


def rerank_answer(request: RerankRequest, model: str, ranked: list[tuple[int, float]], tokens: int,
                  warnings: list[str]) -> dict[str, Any]:
    """Cohere's answer (v1 and v2 alike): ``id``, ``results`` best first (``index``, ``relevance_score``, and
    ``document`` with ``return_documents``), ``meta`` (api version, tokens, warnings), and ``usage`` as vLLM and OVMS
    clients read it."""
    texts = request.texts()
    results = []
    for index, score in ranked:
        result: dict[str, Any] = {"index": index, "relevance_score": score}
        if request.return_documents:
            result["document"] = {"text": texts[index]}
        results.append(result)
    meta: dict[str, Any] = {"api_version": {"version": "2"}, "tokens": {"input_tokens": tokens, "output_tokens": 0}}
    if warnings:
        meta["warnings"] = warnings
    return {"id": f"rerank-{uuid.uuid4().hex}", "model": model, "results": results, "meta": meta,
            "usage": {"total_tokens": tokens}}


def score_answer(model: str, scores: list[float], tokens: int) -> dict[str, Any]:
    """vLLM's score answer: a ``list`` of ``score`` objects, one per pair in the request's order, and ``usage``."""
    return {"id": f"score-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()), "model": model,
            "data": [{"index": index, "object": "score", "score": score} for index, score in enumerate(scores)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0}}
