"""OpenAI request shapes, declared as pydantic models (the answers' are in :mod:`.answer_schema`).

Requests own their conversion to engine parameters (:meth:`OpenAIRequestBase.sampling_params`).
Every OpenAI request field is declared here. Those that change the answer are honoured, or refused
with a 400 naming them (:mod:`ovserve.calculators.llm.request_fields`) where ovserve does not
implement them yet; fields ignored by design (``user``, ...) and unknown ones are accepted and logged.
"""

from __future__ import annotations

import random
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from ovserve.calculators.llm.grammars import ChatResponseFormat, StructuredOutputs, output_constraint
from ovserve.calculators.llm.tools import Tool, ToolCallRequest, ToolChoice, active_tools
from ovserve.engine.generation_config import OPENAI_SAMPLING, SamplingDefaults
from ovserve.engine.protocol import SamplingParams
from ovserve.errors import RequestError

MAX_STOP_STRINGS = 16
#: The longest stop string: streamed text that may be the start of one is held back until it is not.
MAX_STOP_LENGTH = 1000
#: The most messages a chat request may hold.
MAX_MESSAGES = 4096


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")


class TextContentPart(_Request):
    type: Literal["text"]
    text: str


class ImageUrl(_Request):
    #: A data URL, a local path inside the operator's folder, or an http(s) URL where fetching is on.
    url: str
    #: ``low``: the image's longer side is shrunk to 512 pixels first; ``high`` and ``auto``: as it is.
    detail: Literal["auto", "low", "high"] | None = None


class ImageContentPart(_Request):
    type: Literal["image_url"]
    image_url: ImageUrl
    #: Set by the Responses and Messages APIs' conversions: how their request names the image, for errors.
    where: str | None = Field(None, exclude=True)


ContentPart = Annotated[TextContentPart | ImageContentPart, Field(discriminator="type")]


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    #: An assistant message's calls.
    tool_calls: list[ToolCallRequest] | None = None
    #: A tool message: the call it answers.
    tool_call_id: str | None = None
    #: OpenAI's reference to an earlier spoken answer (``{"id": ...}``): refused, as no audio is kept.
    audio: Any = None

    @field_validator("content", mode="before")
    @classmethod
    def _no_audio(cls, value: Any) -> Any:
        if isinstance(value, list) and any(isinstance(p, dict) and p.get("type") == "input_audio" for p in value):
            raise ValueError("input_audio parts are transcribed by a voice graph (graphs/voice.pbtxt, which combines "
                             "a speech-to-text model with the LLM); this graph has no speech-to-text model")
        return value

    @field_validator("audio")
    @classmethod
    def _no_audio_reference(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("an earlier spoken answer cannot be referred to by its audio id: ovserve keeps no audio; "
                             "send its transcript as the assistant message's content")
        return value

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text for part in self.content if isinstance(part, TextContentPart))

    def images(self) -> list[tuple[int, ImageContentPart]]:
        """The message's image parts, with their places in ``content``."""
        if not isinstance(self.content, list):
            return []
        return [(index, part) for index, part in enumerate(self.content) if isinstance(part, ImageContentPart)]


class StreamOptions(_Request):
    include_usage: bool = False


#: ``metadata`` with OpenAI's limits: at most 16 pairs, keys of up to 64 characters, values of up to 512.
Metadata = Annotated[dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]],
                     Field(max_length=16)]


#: The most tokens prompt lookup may propose per step. Above it, OpenVINO GenAI 2026.4 failed engine steps (a sampler
#: assertion, which restarts the engine for every request) or overshot max_tokens once several sequences ran:
#: 16 with n 20, 48 with n 8 (``tests/engine/engine_fuzz.py``); up to 10 held with 60 sequences at once.
MAX_ASSISTANT_TOKENS = 10


class OpenAIRequestBase(_Request):
    """The parameters chat and text completions share."""

    model: str
    max_tokens: Annotated[int, Field(ge=0)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Annotated[int, Field(ge=1, le=128)] = 1
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    #: Token id (as a string, as JSON keys are) to a bias from -100 to 100.
    response_format: ChatResponseFormat | None = None
    #: vLLM's constraints beyond JSON (json, regex, choice, grammar, json_object, structural_tag); its legacy
    #: ``guided_*`` fields are read as these (:func:`~ovserve.calculators.llm.request.completion_body`).
    structured_outputs: StructuredOutputs | None = None
    logit_bias: dict[Annotated[str, Field(pattern=r"^\d+$")], Annotated[float, Field(ge=-100, le=100)]] | None = None
    user: str | None = None
    # Extensions of vLLM and OVMS, sent at the top level (the openai client's extra_body):
    #: Generate until max_tokens even after end-of-sequence.
    ignore_eos: bool = False
    #: Sample only from the ``top_k`` most likely tokens (0 or -1: all of them).
    top_k: Annotated[int, Field(ge=-1, le=2**31 - 1)] | None = None
    #: Drop tokens less likely than ``min_p`` times the most likely one.
    min_p: Annotated[float, Field(ge=0, lt=1)] | None = None
    #: Hugging Face's multiplicative penalty on tokens already in the prompt or output (1: none).
    repetition_penalty: Annotated[float, Field(gt=0, le=10)] | None = None
    #: Generate at least this many tokens before end-of-sequence or a stop may end the answer.
    min_tokens: Annotated[int, Field(ge=0)] = 0
    #: Token ids that end the answer, as end-of-sequence does.
    stop_token_ids: Annotated[list[int], Field(max_length=MAX_STOP_STRINGS)] | None = None
    #: Keep the stop string that ended the answer at its end.
    include_stop_str_in_output: bool = False
    skip_special_tokens: bool = True
    #: vLLM's: name each token in ``logprobs`` ``token_id:N`` instead of by its text.
    return_tokens_as_token_ids: bool = False
    #: OVMS's prompt lookup settings (a model served with ``plugin_config: {"prompt_lookup": true}``): how many
    #: tokens to propose from the prompt per step, and the longest n-gram matched to find them. At most
    #: :data:`MAX_ASSISTANT_TOKENS` are proposed. ``num_assistant_tokens`` is also the draft model's tokens per step
    #: in speculative decoding.
    num_assistant_tokens: Annotated[int, Field(ge=1, le=MAX_ASSISTANT_TOKENS)] | None = None
    max_ngram_size: Annotated[int, Field(ge=1, le=64)] | None = None
    #: OVMS's speculative decoding (a model served with a draft model): the draft proposes tokens while its own
    #: probability for each stays above this, instead of a fixed ``num_assistant_tokens``. 0 would mean neither is
    #: set, which fails the engine's step: refused by the bound.
    assistant_confidence_threshold: Annotated[float, Field(gt=0, le=1)] | None = None

    @field_validator("stop")
    @classmethod
    def _stop_strings(cls, value: str | list[str] | None) -> str | list[str] | None:
        strings = [value] if isinstance(value, str) else value or []
        if len(strings) > MAX_STOP_STRINGS:
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings are supported")
        if any(s == "" for s in strings):
            raise ValueError("stop strings must not be empty")
        if any(len(s) > MAX_STOP_LENGTH for s in strings):
            raise ValueError(f"stop strings must be at most {MAX_STOP_LENGTH} characters long")
        return value

    @property
    def stop_strings(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def keeps_answer(self) -> bool:
        """Whether the server keeps the whole answer (a chat completion with ``store: true``)."""
        return False

    def requested_max_tokens(self) -> int | None:
        return self.max_tokens

    def sampling_params(self, prompt_tokens: int, context_length: int, max_tokens_limit: int | None,
                        defaults: SamplingDefaults = OPENAI_SAMPLING) -> SamplingParams:
        """Engine settings for this request; refuses prompts and limits that do not fit the context.

        Sampling settings the request leaves out come from the model's ``defaults``; without a ``seed``
        the request draws its own, so that two identical requests do not sample identical text."""
        room = context_length - prompt_tokens
        if room <= 0:
            raise RequestError(
                f"This model's maximum context length is {context_length} tokens, but the prompt has "
                f"{prompt_tokens} tokens. Shorten the prompt.", param="messages", code="context_length_exceeded")
        requested = self.requested_max_tokens()
        if requested == 0 and not self.echoes_prompt:
            raise RequestError("'max_tokens' must be at least 1 (0 is for completions with echo, which return the "
                               "prompt alone)", param="max_tokens", code="invalid_value")
        if requested is not None and requested > room:
            raise RequestError(
                f"This model's maximum context length is {context_length} tokens. However, you requested "
                f"{prompt_tokens + requested} tokens ({prompt_tokens} in the prompt, {requested} for the "
                f"completion). Reduce the prompt or max_tokens.", param="max_tokens",
                code="context_length_exceeded")
        if requested is not None and max_tokens_limit is not None and requested > max_tokens_limit:
            raise RequestError(f"max_tokens is {requested}, above this server's limit of {max_tokens_limit}",
                               param="max_tokens", code="invalid_value")
        limit = requested if requested is not None else min(room, max_tokens_limit or room)
        if self.min_tokens > limit:
            raise RequestError(f"min_tokens ({self.min_tokens}) is more than max_tokens ({limit})",
                               param="min_tokens", code="invalid_value")
        json_schema, grammar = output_constraint(self.response_format, self.structured_outputs)
        return SamplingParams(
            max_new_tokens=limit,
            temperature=defaults.temperature if self.temperature is None else self.temperature,
            top_p=defaults.top_p if self.top_p is None else self.top_p,
            top_k=defaults.top_k if self.top_k is None else max(self.top_k, 0),
            seed=random.getrandbits(32) if self.seed is None else self.seed,
            stop=self.stop_strings,
            ignore_eos=self.ignore_eos,
            min_p=self.min_p or 0.0,
            repetition_penalty=self.repetition_penalty or 1.0,
            presence_penalty=self.presence_penalty or 0.0,
            frequency_penalty=self.frequency_penalty or 0.0,
            min_new_tokens=self.min_tokens,
            stop_token_ids=tuple(self.stop_token_ids or ()),
            json_schema=json_schema,
            grammar=grammar,
            logprobs=self.wants_logprobs,
        )

    @property
    def wants_logprobs(self) -> bool:
        """Whether the answer reports its tokens' log-probabilities."""
        return False

    @property
    def echoes_prompt(self) -> bool:
        """Whether the answer starts with the prompt (completions' ``echo``)."""
        return False

    @property
    def alternatives(self) -> int:
        """How many of the most likely tokens the answer lists in each token's place."""
        return 0

    @property
    def scores_prompt(self) -> bool:
        """Whether the answer reports the prompt's log-probabilities (completions' ``echo`` with ``logprobs``)."""
        return False

    @property
    def prompt_count(self) -> int:
        """How many prompts the request holds (completions may hold several), each answered with ``n`` choices."""
        return 1

    @property
    def choice_count(self) -> int:
        """How many choices the answer has: ``n`` per prompt, numbered prompt by prompt (prompt index x n + j)."""
        return self.n * self.prompt_count


class ChatCompletionRequest(OpenAIRequestBase):
    """``POST /v3/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    tools: Annotated[list[Tool], Field(max_length=128)] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool = True
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    verbosity: str | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None
    store: bool | None = None
    metadata: Metadata | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    #: vLLM's: extra variables for the chat template (e.g. ``enable_thinking``).
    chat_template_kwargs: dict[str, Any] | None = None

    @property
    def keeps_answer(self) -> bool:
        return self.store is True

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def wants_logprobs(self) -> bool:
        return bool(self.logprobs)

    @property
    def alternatives(self) -> int:
        return (self.top_logprobs or 0) if self.logprobs else 0

    def callable_tools(self) -> list[Tool]:
        """The tools the answer may call (none with ``tool_choice: "none"``; the named one when one is named)."""
        return active_tools(self.tools, self.tool_choice)


#: The most prompts one completions request may hold (an array of strings or of token arrays).
MAX_PROMPTS = 128

#: One prompt as token ids.
TokenPrompt = Annotated[list[StrictInt], Field(min_length=1)]


class CompletionRequest(OpenAIRequestBase):
    """``POST /v3/completions``: a prompt as text or token ids, or several (an array of either), each answered
    with its own ``n`` choices, numbered in prompt order."""

    prompt: (str | Annotated[list[str], Field(min_length=1, max_length=MAX_PROMPTS)] | TokenPrompt
             | Annotated[list[TokenPrompt], Field(min_length=1, max_length=MAX_PROMPTS)])
    logprobs: Annotated[int, Field(ge=0, le=5)] | None = None
    echo: bool = False
    best_of: Annotated[int, Field(ge=1, le=128)] | None = None
    suffix: str | None = None

    @property
    def wants_logprobs(self) -> bool:
        return self.logprobs is not None

    @property
    def echoes_prompt(self) -> bool:
        return self.echo

    @property
    def alternatives(self) -> int:
        return self.logprobs or 0

    @property
    def scores_prompt(self) -> bool:
        return self.echo and self.logprobs is not None

    @field_validator("prompt", mode="before")
    @classmethod
    def _one_shape(cls, value: Any) -> Any:
        if isinstance(value, list):
            shapes = {"a string" if isinstance(item, str) else "a token array" if isinstance(item, list) else
                      "a token id" if isinstance(item, int) else type(item).__name__ for item in value}
            if len(shapes) > 1:
                raise ValueError(f"an array prompt holds strings, token ids or token arrays, one kind only (got "
                                 f"{' and '.join(sorted(shapes))})")
            arrays = [value] if shapes == {"a token id"} else [item for item in value if isinstance(item, list)]
            for array in arrays:
                bad = next((t for t in array if isinstance(t, bool) or not isinstance(t, int)), None)
                if bad is not None or any(isinstance(t, bool) for t in array):
                    raise ValueError(f"token ids must be integers (got {bad!r}, a {type(bad).__name__}): a "
                                     f"valid integer is expected")
        return value

    @field_validator("prompt")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if value == "" or (isinstance(value, list) and "" in value):
            raise ValueError("a prompt must not be empty")
        return value

    def prompts(self) -> list[str | list[int]]:
        """Each prompt, in order: a text or token ids."""
        if isinstance(self.prompt, str) or isinstance(self.prompt[0], int):
            return [self.prompt]  # type: ignore[list-item]
        return list(self.prompt)  # type: ignore[arg-type]

    @property
    def prompt_count(self) -> int:
        return len(self.prompts())
