"""Generate: submit the prompt to the shared continuous-batching engine and stream its tokens."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from ovserve import Calculator, CalculatorContext, Input, Output, SideInput
from ovserve.calculators.llm.types import GenerationDelta, Prompt
from ovserve.engine.client import EngineClient, EngineRequest, TokenDelta


class LLMCalculator(Calculator):
    """Runs one request on the engine; every engine step's new tokens go out as one DELTAS packet.

    Requests from all connections are batched together by the engine. ``n`` choices are ``n`` engine
    requests (seeds ``seed``, ``seed + 1``, ... when the request gives one), batched together too; their
    deltas go out as they come, each with its choice ``index``. If the run ends early (the client went
    away), ``close`` aborts every request so the engine stops spending steps on them."""

    PROMPT = Input(Prompt)
    ENGINE = SideInput(EngineClient)
    DELTAS = Output(GenerationDelta)

    def open(self, ctx: CalculatorContext) -> None:
        self.requests: list[EngineRequest] = []

    async def process(self, ctx: CalculatorContext) -> None:
        prompt: Prompt = ctx.value(self.PROMPT)
        engine: EngineClient = ctx.side["ENGINE"]
        params = prompt.params
        if params.max_new_tokens == 0:  # echo alone: the answer is the prompt, nothing to generate
            for index in range(prompt.n):
                await ctx.send(self.DELTAS, GenerationDelta((), "length", int(prompt.token_ids.size), 0, index))
            return
        for index in range(prompt.n):
            seed = params.seed + index if params.seed is not None and index else params.seed
            self.requests.append(engine.submit(prompt.token_ids, replace(params, seed=seed)))
        if prompt.n == 1:
            completion_tokens = 0
            async for delta in self.requests[0]:
                completion_tokens += len(delta.token_ids)
                await self._send(ctx, delta, self.requests[0].prompt_tokens, completion_tokens, 0)
        else:
            await self._merge(ctx)

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
        await ctx.send(self.DELTAS, GenerationDelta(delta.token_ids, delta.finish, prompt_tokens, completion_tokens,
                                                    index, delta.logprobs))

    def close(self, ctx: CalculatorContext) -> None:
        for request in self.requests:
            request.abort()
