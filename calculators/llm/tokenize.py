"""Tokenize: the chat template for chat requests, the raw prompt for completions."""

from __future__ import annotations

import numpy as np
from ovserve.calculators.llm.schema import ChatCompletionRequest, CompletionRequest
from ovserve.calculators.llm.types import GenerationLimits, LLMRequest, Prompt

from ovserve import Calculator, CalculatorContext, Input, Output, SideInput
from ovserve.engine.tokenizer import TextTokenizer
from ovserve.errors import RequestError


class TokenizerCalculator(Calculator):
    """Turns a request into prompt token ids and engine sampling settings; refuses what cannot fit."""

    REQUEST = Input(LLMRequest)
    TOKENIZER = SideInput(TextTokenizer)
    LIMITS = SideInput(GenerationLimits)
    PROMPT = Output(Prompt)

    def process(self, ctx: CalculatorContext) -> None:
        request: LLMRequest = ctx.value(self.REQUEST)
        tokenizer: TextTokenizer = ctx.side["TOKENIZER"]
        limits: GenerationLimits = ctx.side["LIMITS"]
        body = request.body
        if isinstance(body, ChatCompletionRequest):
            token_ids = self.chat_tokens(tokenizer, body)
        else:
            token_ids = self.completion_tokens(tokenizer, body)
        params = body.sampling_params(int(token_ids.size), limits.context_length, limits.max_tokens_limit)
        ctx.send(self.PROMPT, Prompt(token_ids, params))

    @staticmethod
    def chat_tokens(tokenizer: TextTokenizer, body: ChatCompletionRequest) -> np.ndarray:
        if not tokenizer.chat_template:
            raise RequestError("this model has no chat template; use /v3/completions with a plain prompt",
                               param="messages", code="no_chat_template")
        messages = [
            {"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages
        ]
        try:
            text = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        except Exception as error:
            raise RequestError(f"the model's chat template rejected the messages: {error}",
                               param="messages", code="invalid_value") from None
        return tokenizer.encode(text, add_special_tokens=False)

    @staticmethod
    def completion_tokens(tokenizer: TextTokenizer, body: CompletionRequest) -> np.ndarray:
        prompt = body.prompt
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], int):
            return np.asarray(prompt, dtype=np.int64)
        text = prompt[0] if isinstance(prompt, list) else prompt
        return tokenizer.encode(str(text), add_special_tokens=True)
