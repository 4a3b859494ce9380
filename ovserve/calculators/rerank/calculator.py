"""The rerank node: a Cohere rerank or vLLM score request in, the answer out, scored by a cross-encoder."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ovserve import Calculator, CalculatorContext, Input, Output, SideInput
from ovserve.calculators.rerank.model import Reranker
from ovserve.calculators.rerank.schema import CrossEncoderRerankRequest, ScoreRequest, rerank_answer, score_answer
from ovserve.endpoints import not_served
from ovserve.engine.rerank_kind import RerankJob, ScoreJob
from ovserve.errors import RequestError
from ovserve.payloads import HttpRequestPayload, HttpResponsePayload
from ovserve.request_body import parse_body


class RerankCalculator(Calculator):
    """``/rerank``: Cohere's rerank (as OVMS serves it): the documents' relevance to the query, best first.
    ``/score``: vLLM's score: one score per (``text_1``, ``text_2``) pair. Both are checked, tokenized and bounded
    here (a 400 names the field), then scored by the reranker's engine process; a full engine queue answers 503."""

    REQUEST_PAYLOAD = Input(HttpRequestPayload, doc="the HTTP request, JSON already parsed")
    RERANKER = SideInput(Reranker)
    RESPONSE_PAYLOAD = Output(HttpResponsePayload)

    async def process(self, ctx: CalculatorContext) -> None:
        payload: HttpRequestPayload = ctx.value(self.REQUEST_PAYLOAD)
        reranker: Reranker = ctx.side["RERANKER"]
        if payload.uri.endswith("/rerank"):
            body, tokens = await self.rerank(payload, reranker)
        elif payload.uri.endswith("/score"):
            body, tokens = await self.score(payload, reranker)
        else:
            raise not_served(payload.uri, payload.model, "a reranker", ("/rerank", "/score"))
        ctx.send(self.RESPONSE_PAYLOAD, HttpResponsePayload(json.dumps(body).encode(), log={"prompt_tokens": tokens}))

    @staticmethod
    async def rerank(payload: HttpRequestPayload, reranker: Reranker) -> tuple[dict[str, Any], int]:
        request = parse_body(CrossEncoderRerankRequest, payload.json)
        texts = request.texts()
        within_documents(len(texts), reranker.max_documents, "documents")
        inputs = await asyncio.to_thread(reranker.inputs.prepare, [request.query], [0] * len(texts), texts, fit=True,
                                         max_tokens_per_doc=request.max_tokens_per_doc)
        ranked = await reranker.engine.call(RerankJob(inputs.queries[0], tuple(inputs.documents),
                                                      tuple(inputs.lengths), request.top_n))
        return rerank_answer(request, payload.model, ranked, inputs.tokens, inputs.warnings), inputs.tokens

    @staticmethod
    async def score(payload: HttpRequestPayload, reranker: Reranker) -> tuple[dict[str, Any], int]:
        request = parse_body(ScoreRequest, payload.json)
        queries, query_of, documents = request.pairs()
        within_documents(len(documents), reranker.max_documents, "text_2")
        inputs = await asyncio.to_thread(reranker.inputs.prepare, queries, query_of, documents,
                                         fit=request.truncate_prompt_tokens == -1, names=("text_1", "text_2"),
                                         cut_hint=", or send truncate_prompt_tokens: -1 to have it cut")
        scores = await reranker.engine.call(ScoreJob(tuple(inputs.queries), tuple(inputs.query_of),
                                                     tuple(inputs.documents), tuple(inputs.lengths)))
        return score_answer(payload.model, scores, inputs.tokens), inputs.tokens


def within_documents(count: int, limit: int, name: str) -> None:
    """At most ``limit`` documents (the graph's ``max_allowed_chunks``) in one request."""
    if count > limit:
        raise RequestError(f"{name} has {count} texts, more than the {limit} this model ranks in one request "
                           f"(max_allowed_chunks); split the request", param=name, code="too_many_documents")
