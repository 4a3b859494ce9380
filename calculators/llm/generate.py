"""Generate: submit the prompt to the shared continuous-batching engine and stream its tokens."""

from __future__ import annotations

from ovserve import Calculator, CalculatorContext, Input, Output, SideInput
from ovserve.calculators.llm.types import GenerationDelta, Prompt
from ovserve.engine.client import EngineClient, EngineRequest


class LLMCalculator(Calculator):
    """Runs one request on the engine; every engine step's new tokens go out as one DELTAS packet.

    Requests from all connections are batched together by the engine. If the run ends early (the
    client went away), ``close`` aborts the request so the engine stops spending steps on it."""

    PROMPT = Input(Prompt)
    ENGINE = SideInput(EngineClient)
    DELTAS = Output(GenerationDelta)

    def open(self, ctx: CalculatorContext) -> None:
        self.request: EngineRequest | None = None

    async def process(self, ctx: CalculatorContext) -> None:
        prompt: Prompt = ctx.value(self.PROMPT)
        request = ctx.side["ENGINE"].submit(prompt.token_ids, prompt.params)
        self.request = request
        completion_tokens = 0
        async for delta in request:
            if delta.error is not None:
                raise delta.error
            completion_tokens += len(delta.token_ids)
            await ctx.send(self.DELTAS, GenerationDelta(delta.token_ids, delta.finish, request.prompt_tokens,
                                                        completion_tokens))

    def close(self, ctx: CalculatorContext) -> None:
        if self.request is not None:
            self.request.abort()
