"""Score: the best alternatives to each token (``top_logprobs``) and the prompt's log-probabilities."""

from __future__ import annotations

from dataclasses import replace

from ovserve import Calculator, CalculatorContext, Input, Output, SideInput
from ovserve.calculators.llm.types import GenerationDelta, Prompt
from ovserve.engine.scorer import LogitScorer, ScorerUnavailable, ScoringSession, TokenScore
from ovserve.errors import RequestError


class TokenScorerCalculator(Calculator):
    """Adds to the engine's tokens what the engine does not give, for the requests that ask for it.

    For chat's ``top_logprobs`` above 0, completions' ``logprobs`` above 0, and completions' ``echo``
    with ``logprobs``, each choice's tokens go through :class:`~ovserve.engine.scorer.LogitScorer` as
    they arrive; the tokens' log-probabilities are then the scorer's, so that they agree with their
    alternatives. Every other request's deltas pass through untouched, and cost the scorer nothing.
    """

    DELTAS = Input(GenerationDelta)
    PROMPT = Input(Prompt, doc="the prompt's token ids, which the scorer feeds first, and its plan: how many "
                               "alternatives, whether the prompt is scored")
    SCORER = SideInput(LogitScorer)
    SCORED = Output(GenerationDelta)

    def open(self, ctx: CalculatorContext) -> None:
        self.scorer: LogitScorer = ctx.side["SCORER"]
        self.prompt: Prompt | None = None
        self.sessions: dict[int, ScoringSession] = {}
        #: How many alternatives, and whether the prompt is scored (set with the request).
        self.top, self.scores_prompt = 0, False
        #: Each prompt's scores (by prompt number), computed with its first choice's sequence and given to each of
        #: its choices.
        self.prompt_scores: dict[int, tuple[TokenScore, ...]] = {}
        #: The tokens reserved with the scorer for this request (its share of the scorer's memory).
        self.reserved = 0

    async def process(self, ctx: CalculatorContext) -> None:
        prompt: Prompt | None = ctx.value(self.PROMPT)
        if prompt is not None:
            self.prompt = prompt
            self.top, self.scores_prompt = prompt.plan.alternatives, prompt.plan.scores_prompt
        delta: GenerationDelta | None = ctx.value(self.DELTAS)
        if delta is None:
            return
        if not (self.top or self.scores_prompt):  # most requests: straight through
            await ctx.send(self.SCORED, delta)
            return
        top, last = self.top, delta.finish is not None
        assert self.prompt is not None, "the prompt comes before its tokens"
        if not self.reserved:
            self.reserved = await self.scorer.reserve(self.prompt.n * sum(
                int(token_ids.size) + params.max_new_tokens for token_ids, params in self.prompt.parts()))
        session = self.sessions.get(delta.index)
        prompt_logprobs = None
        if session is None:
            session = self.sessions[delta.index] = await self._session(top)
            number = delta.index // self.prompt.n
            # a prompt's scores are the same for each of its choices: computed with the first
            first = self.scores_prompt and number not in self.prompt_scores
            scored = await session.prompt(self.prompt.prompt_of(delta.index)[0].tolist(), top=top,
                                          all_positions=first)
            if first:
                self.prompt_scores[number] = tuple(scored)
            prompt_logprobs = self.prompt_scores[number] if self.scores_prompt else None
        logprobs = tuple(await session.tokens(delta.token_ids, top=top, last=last))
        if last:
            self.sessions.pop(delta.index).close()
        await ctx.send(self.SCORED, replace(delta, logprobs=logprobs, prompt_logprobs=prompt_logprobs))

    async def _session(self, top: int) -> ScoringSession:
        try:
            return await self.scorer.session()
        except ScorerUnavailable as error:
            param = self.prompt.plan.logprobs_param if self.prompt is not None else "logprobs"
            raise RequestError(f"'{param}' {'above 0 ' if top else 'with echo '}cannot be served for this model: "
                               f"{error}", param=param, code="unsupported_parameter") from None

    def close(self, ctx: CalculatorContext) -> None:
        for session in self.sessions.values():
            session.close()
        if self.reserved:
            self.scorer.unreserve(self.reserved)
