"""Generate: submit the prompt to the shared continuous-batching engine and stream its tokens."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from ovserve import Calculator, CalculatorContext, Input, Output, SideInput
from ovserve.calculators.llm.types import GenerationDelta, Prompt
from ovserve.engine.client import TokenDelta
from ovserve.engine.interface import GenerationEngine, TokenStream
from ovserve.engine.protocol import SamplingParams
from ovserve.engine.scorer import TokenScore


class LLMCalculator(Calculator):
    """Runs one request on the engine; every engine step's new tokens go out as one DELTAS packet.

    Requests from all connections are batched together by the engine. ``n`` choices are ``n`` engine
    requests (seeds ``seed``, ``seed + 1``, ... when the request gives one), batched together too; their
    deltas go out as they come, each with its choice ``index``. A request with several prompts submits each
    prompt's choices in turn: prompt ``p``'s choice ``j`` is choice ``p x n + j``. If the run ends early (the
    client went away), ``close`` aborts every request so the engine stops spending steps on them."""

    PROMPT = Input(Prompt)
    ENGINE = SideInput(GenerationEngine, doc="the text generation engine of the model (the LLMEngine node's)")
    DELTAS = Output(GenerationDelta)

    def open(self, ctx: CalculatorContext) -> None:
        self.requests: list[TokenStream] = []

    async def process(self, ctx: CalculatorContext) -> None:
        prompt: Prompt = ctx.value(self.PROMPT)
        engine: GenerationEngine = ctx.side["ENGINE"]
        parts = prompt.parts()
        if prompt.params.max_new_tokens == 0:  # echo alone: the answer is the prompt, nothing to generate
            for index in range(prompt.n * len(parts)):
                size = int(prompt.prompt_of(index)[0].size)
                await ctx.send(self.DELTAS, GenerationDelta((), "length", size, 0, index))
            return
        answers = max(prompt.n, prompt.best_of)
        vision = prompt.vision
        for token_ids, params in parts:  # without best_of, request k is choice k
            for index in range(answers):
                settings = answer_params(prompt, index, params)
                self.requests.append(engine.submit(token_ids, settings) if vision is None else
                                     engine.submit_vision(vision.text, vision.images, settings, vision.prompt_tokens))
        if prompt.best_of > prompt.n:
            await self._best(ctx, prompt.n, answers, keep_logprobs=prompt.params.logprobs)
        elif len(self.requests) == 1:
            completion_tokens = 0
            async for delta in self.requests[0]:
                completion_tokens += len(delta.token_ids)
                await self._send(ctx, delta, self.requests[0].prompt_tokens, completion_tokens, 0)
        else:
            await self._merge(ctx)

    async def _best(self, ctx: CalculatorContext, n: int, answers: int, *, keep_logprobs: bool) -> None:
        """Run every request to its end, then send, prompt by prompt, the ``n`` of its ``answers`` with the highest
        mean log-probability per token (OpenAI's ``best_of``), best first, each as one delta."""
        collected = await asyncio.gather(*(_collect(request) for request in self.requests))
        for number, start in enumerate(range(0, len(collected), answers)):
            ranked = sorted(collected[start:start + answers], key=lambda answer: -answer.mean_logprob)[:n]
            for rank, answer in enumerate(ranked):
                delta = replace(answer.delta, logprobs=answer.delta.logprobs if keep_logprobs else None)
                await self._send(ctx, delta, answer.prompt_tokens, len(answer.delta.token_ids), number * n + rank)

    async def _merge(self, ctx: CalculatorContext) -> None:
        """Forward the deltas of several requests in the order they arrive, from this one task."""
        counts = [0] * len(self.requests)
        iterators = [aiter(request) for request in self.requests]
        pending: dict[asyncio.Future[TokenDelta], int] = {}

        def wait_for_next(index: int) -> None:
            pending[asyncio.ensure_future(anext(iterators[index]))] = index

        for index in range(len(self.requests)):
            wait_for_next(index)
        try:
            while pending:
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for future in sorted(done, key=pending.__getitem__):
                    index = pending.pop(future)
                    try:
                        delta = future.result()
                    except StopAsyncIteration:
                        continue
                    counts[index] += len(delta.token_ids)
                    await self._send(ctx, delta, self.requests[index].prompt_tokens, counts[index], index)
                    if delta.finish is None:
                        wait_for_next(index)
        finally:
            for future in pending:
                future.cancel()

    async def _send(self, ctx: CalculatorContext, delta: TokenDelta, prompt_tokens: int, completion_tokens: int,
                    index: int) -> None:
        if delta.error is not None:
            raise delta.error
        logprobs = None
        if delta.logprobs is not None:
            logprobs = tuple(map(TokenScore, delta.token_ids, delta.logprobs))
        await ctx.send(self.DELTAS, GenerationDelta(delta.token_ids, delta.finish, prompt_tokens, completion_tokens,
                                                    index, logprobs))

    def close(self, ctx: CalculatorContext) -> None:
        for request in self.requests:
            request.abort()


@dataclass(frozen=True, slots=True)
class _Answer:
    """One request's whole answer, as one delta."""

    delta: TokenDelta
    prompt_tokens: int

    @property
    def mean_logprob(self) -> float:
        logprobs = self.delta.logprobs or ()
        return sum(logprobs) / len(logprobs) if logprobs else float("-inf")  # nothing said is no best answer


async def _collect(request: TokenStream) -> _Answer:
    token_ids: list[int] = []
    logprobs: list[float] = []
    finish = None
    async for delta in request:
        if delta.error is not None:
            raise delta.error
        token_ids.extend(delta.token_ids)
        logprobs.extend(delta.logprobs or ())
        finish = delta.finish
    return _Answer(TokenDelta(tuple(token_ids), finish, None, tuple(logprobs)), request.prompt_tokens)


def answer_params(prompt: Prompt, index: int, params: SamplingParams | None = None) -> SamplingParams:
    """The engine settings of a prompt's answer ``index`` (the first prompt's, or ``params``'s prompt's): seeds
    ``seed``, ``seed + 1``, ... when the request gives one, for every prompt alike; log-probabilities kept when
    the answers are ranked (``best_of``)."""
    params = params or prompt.params
    seed = params.seed + index if params.seed is not None and index else params.seed
    return replace(params, seed=seed, logprobs=params.logprobs or prompt.best_of > prompt.n)
