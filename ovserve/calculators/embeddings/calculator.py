"""The embeddings node: an OpenAI embeddings request (or a Cohere rerank or vLLM score request) in, the response out."""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np

from ovserve import Calculator, CalculatorContext, Input, Output, SideInput
from ovserve.calculators.embeddings.rerank import RerankRequest, rerank_response
from ovserve.calculators.embeddings.schema import EmbeddingRequest
from ovserve.calculators.llm.tokenize_endpoint import encoder_tokens
from ovserve.calculators.rerank.schema import ScoreRequest, score_answer
from ovserve.endpoints import not_served
from ovserve.engine.embedder import BatchingEncoder, EncoderTokenizer
from ovserve.errors import RequestError
from ovserve.payloads import HttpRequestPayload, HttpResponsePayload
from ovserve.request_body import parse_body


class EmbeddingsCalculator(Calculator):
    """``/embeddings``: validates the request, tokenizes its texts (token ids are taken as they are), checks
    their length, embeds them with the batching encoder, and writes OpenAI's ``list`` of ``embedding`` objects
    with ``usage``; ``base64`` is little-endian float32, as OpenAI sends it. ``/rerank``: orders the documents
    by the cosine similarity of their embeddings to the query's (:mod:`.rerank`); ``/score`` (vLLM's) gives each
    (``text_1``, ``text_2``) pair's cosine similarity, as vLLM does for embedding models."""

    REQUEST_PAYLOAD = Input(HttpRequestPayload, doc="the HTTP request, JSON already parsed")
    ENCODER = SideInput(BatchingEncoder)
    RESPONSE_PAYLOAD = Output(HttpResponsePayload)

    async def process(self, ctx: CalculatorContext) -> None:
        payload: HttpRequestPayload = ctx.value(self.REQUEST_PAYLOAD)
        batcher: BatchingEncoder = ctx.side["ENCODER"]
        if payload.uri.endswith("/tokenize"):
            answer = await asyncio.to_thread(encoder_tokens, tokenizer_of(batcher), payload.json)
            ctx.send(self.RESPONSE_PAYLOAD, HttpResponsePayload(json.dumps(answer).encode()))
        elif payload.uri.endswith("/rerank"):
            await self.rerank(ctx, payload, batcher)
        elif payload.uri.endswith("/score"):
            await self.score(ctx, payload, batcher)
        elif payload.uri.endswith("/embeddings"):
            await self.embeddings(ctx, payload, batcher)
        else:
            raise not_served(payload.uri, payload.model, "an embedding model",
                             ("/embeddings", "/rerank", "/score", "/tokenize"))

    async def rerank(self, ctx: CalculatorContext, payload: HttpRequestPayload, batcher: BatchingEncoder) -> None:
        request = parse_body(RerankRequest, payload.json)
        tokenizer = tokenizer_of(batcher)
        token_lists = await asyncio.to_thread(tokenizer.tokenize, [request.query, *request.texts()])
        within_budget(token_lists)
        token_lists = self.within_limit(token_lists, tokenizer.settings.max_length, batcher.truncate,
                                        ["query", *(f"documents[{i}]" for i in range(len(request.documents)))])
        vectors = await batcher.embed(token_lists)
        if not tokenizer.settings.normalize:  # cosine: scores of vectors of length 1
            vectors = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
        tokens = sum(len(t) for t in token_lists)
        body = rerank_response(request, vectors, tokens)
        ctx.send(self.RESPONSE_PAYLOAD, HttpResponsePayload(json.dumps(body).encode(), log={"prompt_tokens": tokens}))

    async def score(self, ctx: CalculatorContext, payload: HttpRequestPayload, batcher: BatchingEncoder) -> None:
        request = parse_body(ScoreRequest, payload.json)
        queries, documents = request.texts()
        tokenizer = tokenizer_of(batcher)
        token_lists = await asyncio.to_thread(tokenizer.tokenize, [*queries, *documents])
        within_budget(token_lists)
        names = [f"text_1[{i}]" for i in range(len(queries))] + [f"text_2[{i}]" for i in range(len(documents))]
        token_lists = self.within_limit(token_lists, tokenizer.settings.max_length,
                                        batcher.truncate or request.truncate_prompt_tokens == -1, names)
        vectors = await batcher.embed(token_lists)
        vectors = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
        firsts = vectors[: len(queries)] if len(queries) > 1 else np.repeat(vectors[:1], len(documents), axis=0)
        scores = np.sum(firsts * vectors[len(queries):], axis=1)
        tokens = sum(len(t) for t in token_lists)
        body = score_answer(payload.model, [float(score) for score in scores], tokens)
        ctx.send(self.RESPONSE_PAYLOAD, HttpResponsePayload(json.dumps(body).encode(), log={"prompt_tokens": tokens}))

    async def embeddings(self, ctx: CalculatorContext, payload: HttpRequestPayload, batcher: BatchingEncoder) -> None:
        request = parse_body(EmbeddingRequest, payload.json)
        tokenizer, dimensions = tokenizer_of(batcher), batcher.dimensions
        if request.dimensions is not None and request.dimensions != dimensions:
            raise RequestError(f"this model's embeddings have {dimensions} dimensions and cannot be shortened "
                               f"(it was not trained for it); leave 'dimensions' out or set it to {dimensions}",
                               param="dimensions", code="invalid_value")
        texts, token_lists = request.texts_and_ids()
        if texts:
            token_lists = await asyncio.to_thread(tokenizer.tokenize, texts)
        else:
            check_vocabulary(token_lists, tokenizer.settings.vocab_size)
        within_budget(token_lists)
        token_lists = self.within_limit(token_lists, tokenizer.settings.max_length, batcher.truncate,
                                        [f"input[{i}]" for i in range(len(token_lists))])
        vectors = await batcher.embed(token_lists)
        tokens = sum(len(t) for t in token_lists)
        body = {"object": "list", "model": payload.model,
                "data": [{"object": "embedding", "index": i, "embedding": self.encode(v, request.encoding_format)}
                         for i, v in enumerate(vectors)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        ctx.send(self.RESPONSE_PAYLOAD, HttpResponsePayload(json.dumps(body).encode(), log={"prompt_tokens": tokens}))

    @staticmethod
    def within_limit(token_lists: list[list[int]], limit: int, truncate: bool, names: list[str]) -> list[list[int]]:
        """The token lists, each at most ``limit`` long: cut if ``truncate``, else the first too long is refused
        (``names`` says what each list is: ``input[0]``, ``documents[2]``, ...)."""
        too_long = next((i for i, tokens in enumerate(token_lists) if len(tokens) > limit), None)
        if too_long is None:
            return token_lists
        if not truncate:
            name = names[too_long]
            raise RequestError(f"{name} has {len(token_lists[too_long])} tokens, more than this model's {limit}; "
                               f"shorten it, or serve the model with truncate: true", param=name.split("[")[0],
                               code="context_length_exceeded")
        # keep the final token (the encoder's [SEP]) so the input still ends as the model expects
        return [tokens if len(tokens) <= limit else tokens[:limit - 1] + tokens[-1:] for tokens in token_lists]

    @staticmethod
    def encode(vector: np.ndarray, encoding_format: str) -> list[float] | str:
        if encoding_format == "base64":
            return base64.b64encode(vector.astype("<f4").tobytes()).decode()
        return vector.tolist()


def tokenizer_of(batcher: BatchingEncoder) -> EncoderTokenizer:
    """The embedding model's tokenizer (every served encoder has one)."""
    assert batcher.tokenizer is not None, "the EmbeddingsModel resource gives its encoder a tokenizer"
    return batcher.tokenizer


#: The most tokens one request may ask to embed (OpenAI's limit): more would hold the model for minutes.
MAX_REQUEST_TOKENS = 300_000


def within_budget(token_lists: list[list[int]]) -> None:
    total = sum(len(tokens) for tokens in token_lists)
    if total > MAX_REQUEST_TOKENS:
        raise RequestError(f"the request has {total} tokens in all, more than the {MAX_REQUEST_TOKENS} one request may "
                           f"have; split it", param="input", code="max_tokens_per_request")


def check_vocabulary(token_lists: list[list[int]], vocab_size: int) -> None:
    """Token ids must name tokens of the model's vocabulary (when its size is known)."""
    for number, tokens in enumerate(token_lists):
        bad = next((t for t in tokens if vocab_size and t >= vocab_size), None)
        if bad is not None:
            raise RequestError(f"input[{number}] has token id {bad}, outside this model's vocabulary (0 to "
                               f"{vocab_size - 1})", param="input", code="invalid_value")
