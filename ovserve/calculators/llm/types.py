"""The packets that flow between the LLM calculators."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ovserve.calculators.llm.images import MediaPolicy
from ovserve.calculators.llm.messages_api import MessagesRequest
from ovserve.calculators.llm.responses_api import ResponsesRequest
from ovserve.calculators.llm.schema import ChatCompletionRequest, CompletionRequest
from ovserve.engine.generation_config import OPENAI_SAMPLING, SamplingDefaults
from ovserve.engine.protocol import SamplingParams
from ovserve.engine.scorer import TokenScore


@dataclass(frozen=True, slots=True)
class VisionLimits:
    """A vision model's images (``GenerationLimits.vision``): what the operator allows, and the prompt tokens one
    image takes (:func:`~ovserve.engine.vision.tokens_per_image`)."""

    policy: MediaPolicy
    tokens_per_image: int


@dataclass(frozen=True, slots=True)
class VisionPrompt:
    """What a vision request's engine requests are given: the text, each image's encoded file with the longest side
    it may keep, and the prompt's tokens (text and images)."""

    text: str
    images: tuple[tuple[bytes, int | None], ...]
    prompt_tokens: int


@dataclass(frozen=True, slots=True)
class LLMRequest:
    """A validated OpenAI request (``REQUEST``), with what the response needs to echo."""

    kind: Literal["chat", "completion"]
    body: ChatCompletionRequest | CompletionRequest
    #: The name the model is served under.
    model: str
    #: ``chatcmpl-...`` or ``cmpl-...``.
    id: str
    #: Unix time the request arrived.
    created: int
    #: The Responses API request this chat request was made from (``/responses``), if it was.
    responses: ResponsesRequest | None = None
    #: The Anthropic Messages API request this chat request was made from (``/messages``), if it was.
    messages: MessagesRequest | None = None

    @property
    def stream(self) -> bool:
        return self.body.stream


@dataclass(frozen=True, slots=True)
class RequestPlan:
    """How one request's answer is cut, parsed and scored. The default is a plain answer, passed through."""

    #: Where each choice's text is cut (``stop``), and whether the stop string stays in it.
    stops: tuple[str, ...] = ()
    include_stop: bool = False
    #: Each prompt's text as the client sent it, put in front of its choices' answers (completions' ``echo``);
    #: empty without echo.
    echo: tuple[str, ...] = ()
    #: The format the answer's tool calls are written and parsed in (a tool parser's name); None when the answer
    #: may call no tool.
    tool_format: str | None = None
    #: At most one tool call per answer (``parallel_tool_calls: false``).
    one_call: bool = False
    #: Whether each choice's text is split into reasoning and content, and whether it begins inside the reasoning
    #: (the chat template opened it).
    reasoning: bool = False
    reasoning_opened: bool = False
    #: Alternatives per token (``top_logprobs``), whether the prompt's own tokens are scored (``echo`` with
    #: ``logprobs``), and the field a refusal of either names.
    alternatives: int = 0
    scores_prompt: bool = False
    logprobs_param: str = "logprobs"

    @property
    def scored(self) -> bool:
        """Whether the answer goes through the scoring pass."""
        return bool(self.alternatives or self.scores_prompt)


@dataclass(frozen=True, slots=True)
class Prompt:
    """A tokenized prompt and its sampling settings (``PROMPT``); ``n`` answers (choices) are wanted.

    A completions request may hold several prompts: the first is ``token_ids`` with ``params``, the others are in
    ``others``, each with its own settings (its room for new tokens differs). Each prompt gets ``n`` choices, and
    prompt ``p``'s choice ``j`` is the request's choice ``p x n + j``."""

    token_ids: np.ndarray
    params: SamplingParams
    n: int = 1
    #: How many answers to generate, of which the ``n`` with the highest log-probability per token are
    #: returned (completions' ``best_of``); no more than ``n`` are generated when it is not above ``n``.
    best_of: int = 1
    #: The request's further prompts, in order, with their engine settings (completions' array prompts).
    others: tuple[tuple[np.ndarray, SamplingParams], ...] = ()
    #: A vision model's prompt (``token_ids`` are then its text's, without the images): the engine takes it as text.
    vision: VisionPrompt | None = None
    #: How the answer is cut, parsed and scored, decided when the request was tokenized (the nodes after the engine
    #: read it); the default passes a plain answer through.
    plan: RequestPlan = RequestPlan()

    def parts(self) -> list[tuple[np.ndarray, SamplingParams]]:
        """Every prompt of the request, in order, with its engine settings."""
        return [(self.token_ids, self.params), *self.others]

    def prompt_of(self, index: int) -> tuple[np.ndarray, SamplingParams]:
        """The prompt (and its settings) that the request's choice ``index`` answers."""
        number = index // self.n
        return (self.token_ids, self.params) if number == 0 else self.others[number - 1]


@dataclass(frozen=True, slots=True)
class GenerationDelta:
    """New token ids of one choice of a request from the engine (``DELTAS``); ``finish`` set on the
    choice's last one."""

    token_ids: tuple[int, ...]
    finish: str | None
    prompt_tokens: int
    #: Tokens of this choice so far.
    completion_tokens: int
    #: Which choice (0 to n - 1) the tokens belong to.
    index: int = 0
    #: Each token's log-probability (with the best alternatives when the request asked for them), when the
    #: request asked for log-probabilities.
    logprobs: tuple[TokenScore, ...] | None = None
    #: The prompt's tokens with their log-probabilities (``None`` for the first), on the choice's first delta
    #: when the request asked for them (completions' ``echo`` with ``logprobs``).
    prompt_logprobs: tuple[TokenScore, ...] | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    """New text of one choice (``TEXT``); ``finish_reason`` (``stop`` or ``length``) set on the choice's
    last one."""

    text: str
    finish_reason: str | None
    prompt_tokens: int
    #: Tokens of this choice so far.
    completion_tokens: int
    #: Which choice (0 to n - 1) the text belongs to.
    index: int = 0
    #: The tokens that arrived with this text and their log-probabilities, when the request asked for them.
    logprobs: tuple[TokenLogprob, ...] | None = None
    #: Tool calls the answer makes, whole (set by the tool-call parser, on the choice's last delta).
    tool_calls: tuple[ToolCall, ...] = ()
    #: The tool calls as they stream (set by the tool-call parser): each call's first piece has its id and name;
    #: a call's pieces' ``arguments`` concatenate to its ``arguments`` in the last delta's :attr:`tool_calls`.
    tool_call_pieces: tuple[ToolCallPiece, ...] = ()
    #: The model's reasoning that came with this delta (set by the reasoning parser).
    reasoning: str = ""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the answer makes: ``call_...`` id, function name, arguments as a JSON object in a string."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolCallPiece:
    """A piece of a tool call as it streams (OpenAI's ``delta.tool_calls[]``): the call's first piece carries its
    ``id`` and ``name``; every piece may carry more of its arguments' JSON text."""

    #: Which call of the answer (0 for the first).
    index: int
    arguments: str = ""
    id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One token, its log-probability, and the most likely tokens in its place (best first)."""

    #: The token's text (its bytes as UTF-8; a token that is part of a character shows as U+FFFD).
    token: str
    #: ``None`` for a prompt's first token, which nothing predicts.
    logprob: float | None
    #: The token's bytes (several tokens may make one character).
    bytes: bytes
    top: tuple[TokenLogprob, ...] = ()
    #: The token's id in the model's vocabulary (shown instead of its text with ``return_tokens_as_token_ids``).
    token_id: int | None = None

    def name(self, as_id: bool) -> str:
        """How the answer names the token: its text, or vLLM's ``token_id:N`` form."""
        return f"token_id:{self.token_id}" if as_id else self.token


#: The default of :attr:`GenerationLimits.max_scored_tokens`: a whole 8k context scored once (``echo`` with
#: ``logprobs``, as lm-evaluation-harness asks), or 20 choices of 400 tokens each.
DEFAULT_MAX_SCORED_TOKENS = 8192


@dataclass(frozen=True, slots=True)
class StatefulLimits:
    """The stateful pipeline's bounds (``GenerationLimits.stateful``: ``pipeline_type: LM`` and NPU), checked before
    its engine sees a request (:mod:`ovserve.calculators.llm.stateful_limits`)."""

    #: The device it runs on, for errors.
    device: str = "CPU"
    #: The longest prompt it takes (NPU's ``MAX_PROMPT_LEN``); ``None``: the context alone bounds it.
    max_prompt_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class GenerationLimits:
    """What the model can take and how it samples by default (``LIMITS``): its context, the server's cap
    on new tokens, and the sampling settings for requests that do not give their own."""

    context_length: int
    max_tokens_limit: int | None = None
    sampling: SamplingDefaults = OPENAI_SAMPLING
    #: The most answers one request may have generated (``n``, or completions' ``best_of``); OVMS's option.
    best_of_limit: int = 20
    #: The engine decodes with prompt lookup (``plugin_config: {"prompt_lookup": true}``, as in OVMS).
    prompt_lookup: bool = False
    #: The most tokens the scoring pass may compute for one request (its choices x (prompt + max_tokens)).
    max_scored_tokens: int = DEFAULT_MAX_SCORED_TOKENS
    #: OpenAI's ``system_fingerprint`` of the loaded model and the settings that change its answers
    #: (:mod:`ovserve.engine.fingerprint`), in every completion answer and chunk; ``None``: not known.
    system_fingerprint: str | None = None
    #: A vision model's images: what the operator allows and what one costs; ``None``: the model takes text only.
    vision: VisionLimits | None = None
    #: The engine runs one request at a time on the stateful pipeline; ``None``: the continuous-batching engine.
    stateful: StatefulLimits | None = None
    #: The engine decodes speculatively with a draft model (OVMS's ``draft_models_path``).
    speculative: bool = False
    #: With KV cache eviction: the prompt lengths (first, last) the engine fails its step on, those that leave fewer
    #: tokens after the cache's ``start_size`` than its SnapKV window (GenAI 2026.4); ``None``: none.
    eviction_gap: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class ModelParsers:
    """How a model writes tool calls and reasoning (``PARSERS``): a tool-call format of
    :mod:`ovserve.calculators.llm.tool_parsers` (``generic`` for chat templates without tools of their
    own), or ``None`` when none is known, with ``unsupported`` naming a format the graph asked for that
    ovserve does not have."""

    tool_parser: str | None = "generic"
    unsupported: str | None = None
    #: How the model marks its reasoning (``qwen3``: ``<think>…</think>``), or ``None`` when it does not think.
    reasoning_parser: str | None = None
    #: The chat template opens the reasoning tag in the prompt (the answer starts inside it, without ``<think>``):
    #: then an answer that does not open it may still be reasoning, and is held until ``</think>`` or its end.
    reasoning_opened_by_template: bool = True
    #: Markers the parsers look for that are special tokens of the model's vocabulary, which decoding drops
    #: (Mistral's ``[TOOL_CALLS]``): (token id, its text), for the detokenizer to put back.
    marker_tokens: tuple[tuple[int, str], ...] = ()
    #: OVMS's ``enable_tool_guided_generation``: with ``tool_choice`` ``auto``, a call the model begins in its family's
    #: format is held to the tools' schemas (the generic format is held to them always).
    tool_guided: bool = False
