"""Stand-ins for the tokenizer and engine, for fast calculator tests (the real ones are tested end to end)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ovserve.calculators.llm.plan import plan_request
from ovserve.calculators.llm.schema import ChatCompletionRequest, CompletionRequest
from ovserve.calculators.llm.types import LLMRequest, ModelParsers, Prompt
from ovserve.engine.client import TokenDelta
from ovserve.engine.interface import GenerationEngine
from ovserve.engine.protocol import EngineInfo, SamplingParams
from ovserve.engine.tokenizer import TextTokenizer


class FakeOVTokenizer:
    """Byte-level like OpenVINO's: each id is one byte, and incomplete UTF-8 at the end is dropped."""

    chat_template = "{{ messages }}"

    def get_eos_token_id(self) -> int:
        return 0

    def get_vocab_vector(self) -> list[str]:
        return [chr(byte) for byte in range(256)]

    def apply_chat_template(self, messages, add_generation_prompt=True, tools=None, extra_context=None):
        context = "".join(f"<{key}={value}>" for key, value in (extra_context or {}).items())
        context += "".join(f"<tool {tool['function']['name']}>" for tool in tools or ())
        return context + "".join(f"<{m['role']}>{m['content']}" for m in messages) + (
            "<assistant>" if add_generation_prompt else "")

    def encode(self, text, add_special_tokens=True):
        class Encoded:
            class input_ids:
                data = np.array([list(text.encode())], dtype=np.int64)

        return Encoded

    def decode(self, ids: Sequence[int], skip_special_tokens=True) -> str:
        return bytes(i for i in ids if i != 0).decode("utf-8", errors="ignore")


def fake_tokenizer() -> TextTokenizer:
    return TextTokenizer(FakeOVTokenizer())


def planned(request: LLMRequest, parsers: ModelParsers | None = None, prompt: Prompt | None = None) -> Prompt:
    """The prompt the tokenize node sends for ``request`` as the nodes after the engine see it: its plan (for a
    model with these ``parsers``), on ``prompt`` (else on a stand-in prompt with the request's ``n``)."""
    plan = plan_request(request.body, parsers or ModelParsers(), fake_tokenizer())
    if prompt is None:
        prompt = Prompt(np.array([1]), SamplingParams(max_new_tokens=16), request.body.n)
    return replace(prompt, plan=plan)


def chat_request(**fields) -> LLMRequest:
    body = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields})
    return LLMRequest("chat", body, "served-name", "chatcmpl-test", 1700000000)


def completion_request(**fields) -> LLMRequest:
    body = CompletionRequest.model_validate({"model": "m", "prompt": "hi", **fields})
    return LLMRequest("completion", body, "served-name", "cmpl-test", 1700000000)


class FakeRequest:
    def __init__(self, deltas: list[TokenDelta], prompt_tokens: int, hold: bool) -> None:
        self.deltas = deltas
        self.prompt_tokens = prompt_tokens
        self.hold = hold
        self.aborted = False

    def __aiter__(self):
        return self._iterate()

    async def _iterate(self):
        for delta in self.deltas:
            yield delta
        if self.hold:
            await asyncio.Event().wait()

    def abort(self) -> None:
        self.aborted = True


class FakeEngine(GenerationEngine):
    """Answers every request with the given deltas; ``hold`` keeps the request open afterwards."""

    async def start(self) -> EngineInfo:
        return EngineInfo("FAKE", 0.0, 0)

    async def stop(self) -> None:
        pass

    @property
    def ready(self) -> bool:
        return True

    def __init__(self, deltas: list[TokenDelta], hold: bool = False,
                 by_seed: dict[int, list[TokenDelta]] | None = None) -> None:
        self.deltas = deltas
        self.by_seed = by_seed or {}
        self.hold = hold
        self.submitted: list[tuple[np.ndarray, SamplingParams]] = []
        self.requests: list[FakeRequest] = []

    def submit(self, token_ids, params: SamplingParams) -> FakeRequest:
        self.submitted.append((np.asarray(token_ids), params))
        request = FakeRequest(self.by_seed.get(params.seed, self.deltas), len(token_ids), self.hold)
        self.requests.append(request)
        return request
