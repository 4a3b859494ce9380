"""Tokenize: the chat template for chat requests, the raw prompt for completions."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ovserve import Calculator, CalculatorContext, Input, Output, SideInput
from ovserve.calculators.llm.images import MediaPolicy
from ovserve.calculators.llm.plan import RequestPlan, plan_request
from ovserve.calculators.llm.schema import MAX_PROMPTS, ChatCompletionRequest, CompletionRequest
from ovserve.calculators.llm.stateful_limits import check_stateful_request
from ovserve.calculators.llm.tools import Tool, family_calls, template_message, template_tools, tool_call_schema
from ovserve.calculators.llm.types import GenerationLimits, LLMRequest, ModelParsers, Prompt, VisionPrompt
from ovserve.calculators.llm.vision_prompt import refuse_images, vision_prompt
from ovserve.engine.protocol import SamplingParams
from ovserve.engine.tokenizer import TextTokenizer
from ovserve.errors import RequestError


def check_token_ids(tokenizer: TextTokenizer, token_ids: list[int], param: str) -> None:
    """Refuse token ids outside the model's vocabulary (negative ones wherever its size is unknown)."""
    size = tokenizer.vocab_size or 2**63
    bad = next((t for t in token_ids if not 0 <= t < size), None)
    if bad is not None:
        raise RequestError(f"'{param}' has token id {bad}, outside this model's vocabulary "
                           f"(0 to {tokenizer.vocab_size - 1})", param=param, code="invalid_value")


def tool_call_settings(body: ChatCompletionRequest, tools: list[Tool], params: SamplingParams,
                       tool_format: str | None, parsers: ModelParsers) -> SamplingParams:
    """The engine settings for an answer that may call ``tools``, in the plan's ``tool_format`` (the model's):
    the generic format is held to its schema; in a family's own format ``auto`` is free (its parser finds the
    calls), while ``required`` and a named function hold the answer to calls in that format."""
    if tool_format is None:
        why = (f"its tool_parser '{parsers.unsupported}' is not implemented" if parsers.unsupported else
               "its chat template renders tools in a format ovserve does not recognise (set tool_parser)")
        raise RequestError(f"this model cannot take tools: {why}", param="tools", code="unsupported_parameter")
    if tool_format == "generic":
        return replace(params, json_schema=tool_call_schema(tools, body.tool_choice, body.parallel_tool_calls))
    if body.tool_choice in (None, "auto"):
        return guided_calls(tools, params, tool_format, parsers.tool_guided, body.parallel_tool_calls)
    forced = family_calls(tool_format, tools, body.parallel_tool_calls)
    if forced is None:
        raise RequestError(f"'tool_choice' {body.tool_choice!r} is not supported in the {tool_format} "
                           f"format (ovserve can force calls in the generic, hermes3, llama3 and phi4 formats); use "
                           f"'auto'", param="tool_choice", code="unsupported_parameter")
    return replace(params, tool_calls=forced)


def guided_calls(tools: list[Tool], params: SamplingParams, tool_format: str, guided: bool,
                 parallel: bool) -> SamplingParams:
    """``tool_choice`` ``auto`` in a family's format: free, or with ``enable_tool_guided_generation`` (``guided``) free
    text until the model writes the format's opening tag, then calls valid for the tools (formats without one stay
    free)."""
    calls = family_calls(tool_format, tools, parallel) if guided else None
    if calls is None or not calls.begin.strip():
        return params
    return replace(params, tool_calls=replace(calls, trigger=calls.begin.strip()))


def template_variables(body: ChatCompletionRequest, parsers: ModelParsers) -> dict[str, Any] | None:
    """``chat_template_kwargs``, with ``enable_thinking`` from ``reasoning_effort`` (``none``: off) unless they
    set it themselves, as OVMS does for models that reason; refused for models that do not."""
    if body.reasoning_effort is None:
        return body.chat_template_kwargs
    if parsers.reasoning_parser is None:
        raise RequestError("'reasoning_effort' needs a model that reasons (with a reasoning_parser); this one does "
                           "not", param="reasoning_effort", code="unsupported_parameter")
    return {"enable_thinking": body.reasoning_effort != "none", **(body.chat_template_kwargs or {})}


#: OVMS's prompt lookup settings for requests that leave them out.
DEFAULT_NUM_ASSISTANT_TOKENS = 5
DEFAULT_MAX_NGRAM_SIZE = 3


def prompt_lookup_settings(body: ChatCompletionRequest | CompletionRequest, params: SamplingParams,
                           limits: GenerationLimits) -> SamplingParams:
    """``params`` with the request's settings for an engine that checks proposed tokens: prompt lookup's (OVMS's
    defaults for those it leaves out), or speculative decoding's (:func:`speculative_settings`). Where the engine
    does neither, a 400 naming the setting the request asks for, which would have no effect."""
    if limits.speculative:
        return speculative_settings(body, params)
    if body.assistant_confidence_threshold is not None:
        raise RequestError("'assistant_confidence_threshold' is a speculative decoding setting, and this model is not "
                           "served with a draft model (its graph would set draft_models_path, or 'ovserve serve "
                           "--draft-model PATH')", param="assistant_confidence_threshold",
                           code="unsupported_parameter")
    if limits.prompt_lookup:
        if params.min_new_tokens:
            # measured with GenAI 2026.4: the engine lets end-of-sequence through before min_tokens
            raise RequestError("'min_tokens' is not supported on a model served with prompt lookup: its engine does "
                               "not hold back end-of-sequence while it checks proposed tokens",
                               param="min_tokens", code="unsupported_parameter")
        return replace(params, num_assistant_tokens=body.num_assistant_tokens or DEFAULT_NUM_ASSISTANT_TOKENS,
                       max_ngram_size=body.max_ngram_size or DEFAULT_MAX_NGRAM_SIZE)
    for name in ("num_assistant_tokens", "max_ngram_size"):
        if getattr(body, name) is not None:
            raise RequestError(f"'{name}' is a prompt lookup or speculative decoding setting, and this model's engine "
                               f"does neither (its graph would set plugin_config: {{\"prompt_lookup\": true}}, or "
                               f"draft_models_path)", param=name, code="unsupported_parameter")
    return params


def speculative_settings(body: ChatCompletionRequest | CompletionRequest, params: SamplingParams) -> SamplingParams:
    """``params`` for an engine with a draft model: ``num_assistant_tokens`` or ``assistant_confidence_threshold``
    (OVMS's default, 5 tokens a step, when neither is given). The engine takes exactly one of them: a request with both
    is refused, and one with neither would fail the engine's step for every request in it."""
    if body.num_assistant_tokens is not None and body.assistant_confidence_threshold is not None:
        raise RequestError("'num_assistant_tokens' and 'assistant_confidence_threshold' cannot be given together: the "
                           "draft model proposes either a fixed number of tokens a step or as many as it is confident "
                           "of; give one", param="num_assistant_tokens", code="invalid_value")
    if body.max_ngram_size is not None:
        raise RequestError("'max_ngram_size' is a prompt lookup setting, and this model decodes speculatively with a "
                           "draft model, which proposes tokens without n-grams", param="max_ngram_size",
                           code="unsupported_parameter")
    if params.temperature > 0:
        # GenAI 2026.4: sampled with a draft, 38 of 192 tokens' log-probabilities came back above 0 (greedy ones
        # matched the model's within 3e-5); best_of ranks answers by them.
        ranked = isinstance(body, CompletionRequest) and (body.best_of or body.n) > body.n
        for name, asked in (("logprobs", body.wants_logprobs), ("best_of", ranked)):
            if asked:
                raise RequestError(f"'{name}' with sampling (temperature above 0) is not supported on a model served "
                                   f"with a draft model: its engine reports wrong log-probabilities for sampled "
                                   f"tokens; ask at temperature 0", param=name, code="unsupported_parameter")
    if body.assistant_confidence_threshold is not None:
        return replace(params, assistant_confidence_threshold=body.assistant_confidence_threshold)
    return replace(params, num_assistant_tokens=body.num_assistant_tokens or DEFAULT_NUM_ASSISTANT_TOKENS)


class TokenizerCalculator(Calculator):
    """Turns a request into prompt token ids and engine sampling settings; refuses what cannot fit."""

    #: Validation, the chat template and tokenization take milliseconds for long prompts: not on the event loop.
    runs_in_thread = True

    REQUEST = Input(LLMRequest)
    TOKENIZER = SideInput(TextTokenizer)
    LIMITS = SideInput(GenerationLimits)
    PARSERS = SideInput(ModelParsers, optional=True, doc="the model's tool-call format (default: generic)")
    PROMPT = Output(Prompt)

    def process(self, ctx: CalculatorContext) -> None:
        request: LLMRequest = ctx.value(self.REQUEST)
        ctx.send(self.PROMPT, engine_prompt(request.body, ctx.side["TOKENIZER"], ctx.side["LIMITS"],
                                            ctx.side.get("PARSERS") or ModelParsers()))

    @staticmethod
    def prompt_text(tokenizer: TextTokenizer, body: ChatCompletionRequest | CompletionRequest,
                    parsers: ModelParsers, add_generation_prompt: bool = True) -> tuple[str, bool]:
        """(the text to encode, whether the tokenizer adds its special tokens)."""
        if isinstance(body, CompletionRequest):
            return str(body.prompt[0] if isinstance(body.prompt, list) else body.prompt), True
        if not tokenizer.chat_template:
            raise RequestError("this model has no chat template; use /v3/completions with a plain prompt",
                               param="messages", code="no_chat_template")
        messages = [template_message("system" if m.role == "developer" else m.role, m.text(), m.tool_calls,
                                     m.tool_call_id, f"messages[{i}]") for i, m in enumerate(body.messages)]
        tools = template_tools(body.callable_tools()) or None
        variables = template_variables(body, parsers)
        try:
            return tokenizer.apply_chat_template(messages, add_generation_prompt, variables, tools), False
        except Exception as error:  # template errors are the request's fault (roles, order)
            raise RequestError(f"the model's chat template rejected the messages: {error}",
                               param="messages", code="invalid_value") from None


def engine_prompt(body: ChatCompletionRequest | CompletionRequest, tokenizer: TextTokenizer,
                  limits: GenerationLimits, parsers: ModelParsers) -> Prompt:
    """What the engine is given for a validated request: each prompt's token ids and its engine settings.

    Raises :class:`RequestError` (a 400 naming the field) for anything the engine must not see: a prompt or
    limits that do not fit the model, settings the engine refuses, more answers than the server allows, several
    prompts that would hold more than one request may."""
    check_token_ids(tokenizer, body.stop_token_ids or [], "stop_token_ids")
    if limits.vision is not None:
        return vision_engine_prompt(body, tokenizer, limits, parsers)
    if isinstance(body, ChatCompletionRequest):
        refuse_images(body)
    prompts = prompt_token_ids(body, tokenizer, parsers)
    plan = plan_request(body, parsers, tokenizer)
    parts = [(token_ids, engine_settings(body, int(token_ids.size), limits, parsers, _prompt_param(body, number),
                                         plan))
             for number, token_ids in enumerate(prompts)]
    best_of = max(body.n, getattr(body, "best_of", None) or 1)
    if best_of > limits.best_of_limit:
        param = "best_of" if best_of > body.n else "n"
        raise RequestError(f"'{param}' is {best_of}, above this server's limit of {limits.best_of_limit} answers "
                           f"per request", param=param, code="invalid_value")
    sizes = [(int(token_ids.size), params.max_new_tokens) for token_ids, params in parts]
    if limits.stateful is not None:
        check_stateful_request(body, [size for size, _ in sizes], parts[0][1], limits.stateful)
    if len(parts) > 1:
        check_prompts_size(sizes, best_of, limits)
    check_scoring_cost(body, sizes, limits.max_scored_tokens)
    (token_ids, params), *others = parts
    return Prompt(token_ids, params, body.n, best_of, tuple(others), plan=plan)


def vision_engine_prompt(body: ChatCompletionRequest | CompletionRequest, tokenizer: TextTokenizer,
                         limits: GenerationLimits, parsers: ModelParsers) -> Prompt:
    """A vision model's prompt: chat only (its engine takes text with images, never token ids)."""
    if not isinstance(body, ChatCompletionRequest):
        raise RequestError("this is a vision model, served for chat: send the prompt as messages to "
                           "/v3/chat/completions", param="prompt", code="unsupported_parameter")
    assert limits.vision is not None
    vision, token_ids = vision_prompt(body, tokenizer, limits.vision, template_variables(body, parsers))
    plan = plan_request(body, parsers, tokenizer)
    params = engine_settings(body, vision.prompt_tokens, limits, parsers, "messages", plan)
    if limits.stateful is not None:
        check_stateful_request(body, [vision.prompt_tokens], params, limits.stateful, images=len(vision.images))
    if body.n > limits.best_of_limit:
        raise RequestError(f"'n' is {body.n}, above this server's limit of {limits.best_of_limit} answers per "
                           f"request", param="n", code="invalid_value")
    check_vision_copies(vision, body.n, limits.vision.policy)
    return Prompt(token_ids, params, body.n, body.n, vision=vision, plan=plan)


def check_vision_copies(vision: VisionPrompt, n: int, policy: MediaPolicy) -> None:
    """Each of the ``n`` answers is an engine request with its own copy of the images (sent to the engine process,
    decoded there): refuse more image data in all than the largest one-answer request may hold."""
    total = n * sum(len(data) for data, _ in vision.images)
    limit = policy.max_bytes * max(policy.max_images, 1)
    if n > 1 and total > limit:
        raise RequestError(f"'n' is {n}: {n} copies of this request's images would be {total} bytes, above this "
                           f"server's limit of {limit} per request (max_image_bytes x max_images_per_request); ask "
                           f"for fewer answers", param="n", code="invalid_value")


def _prompt_param(body: ChatCompletionRequest | CompletionRequest, number: int) -> str:
    """How errors name a prompt: ``messages``, ``prompt``, or ``prompt[i]`` when the request holds several."""
    if isinstance(body, ChatCompletionRequest):
        return "messages"
    return f"prompt[{number}]" if body.prompt_count > 1 else "prompt"


def prompt_token_ids(body: ChatCompletionRequest | CompletionRequest, tokenizer: TextTokenizer,
                     parsers: ModelParsers) -> list[np.ndarray]:
    """Each prompt's token ids: the chat template's for chat; each text encoded, or token ids checked, for
    completions."""
    if isinstance(body, ChatCompletionRequest):
        text, add_special_tokens = TokenizerCalculator.prompt_text(tokenizer, body, parsers)
        return [tokenizer.encode_whole(text, add_special_tokens=add_special_tokens)]
    token_lists = []
    for number, prompt in enumerate(body.prompts()):
        if isinstance(prompt, str):
            token_lists.append(tokenizer.encode_whole(prompt, add_special_tokens=True))
        else:
            check_token_ids(tokenizer, prompt, _prompt_param(body, number))
            token_lists.append(np.asarray(prompt, dtype=np.int64))
    return token_lists


def engine_settings(body: ChatCompletionRequest | CompletionRequest, prompt_tokens: int, limits: GenerationLimits,
                    parsers: ModelParsers, param: str, plan: RequestPlan) -> SamplingParams:
    """The engine settings for one prompt (of ``prompt_tokens``) of the request, as its ``plan`` has it; a refusal
    that is about the prompt names ``param``."""
    try:
        params = body.sampling_params(prompt_tokens, limits.context_length, limits.max_tokens_limit,
                                      limits.sampling)
    except RequestError as error:
        if error.param != "messages" or param == "messages":
            raise
        message = error.message if param == "prompt" else error.message.replace("the prompt has", f"'{param}' has")
        raise RequestError(message, param=param, code=error.code) from None
    check_eviction_gap(prompt_tokens, limits, param)
    tools = body.callable_tools() if isinstance(body, ChatCompletionRequest) else []
    if tools:
        params = tool_call_settings(body, tools, params, plan.tool_format, parsers)  # type: ignore[arg-type]
    params = prompt_lookup_settings(body, params, limits)
    if limits.prompt_lookup or limits.speculative or body.include_stop_str_in_output or limits.stateful is not None:
        # The detokenizer alone finds the stop strings then (it always cuts the text there; the run's end aborts the
        # engine's request). With prompt lookup, the engine's own stop-string check failed its step ("Cannot remove
        # more tokens than has been generated", found by tests/engine/engine_fuzz.py; with a draft model too, on GenAI
        # 2026.4 with 8 sampled requests and one-letter stops); with include_stop_str_in_output, the engine (GenAI
        # 2026.4) dropped a token that begins with a stop string (stop " ", token " capital"), and the answer would
        # end without the stop it was asked to include. The stateful pipeline, given token ids, ended the answer
        # before its first token on a stop string (GenAI 2026.4).
        params = replace(params, stop=())
    try:
        params.check()
    except ValueError as error:
        raise RequestError(f"the engine refuses these settings: {error}", code="invalid_value") from None
    return params


def check_eviction_gap(prompt_tokens: int, limits: GenerationLimits, param: str) -> None:
    """Refuse a prompt of a length the engine's KV cache eviction fails its step on (which would fail every request in
    the step and restart the engine): more tokens than the cache's ``start_size``, but fewer beyond it than its SnapKV
    window. Measured on GenAI 2026.4: every such length failed, no other did (1 to 140 and 250 to 530 tokens)."""
    if limits.eviction_gap is None:
        return
    first, last = limits.eviction_gap
    if first <= prompt_tokens <= last:
        what = "the prompt" if param in ("messages", "prompt") else repr(param)
        raise RequestError(f"{what} has {prompt_tokens} tokens, and this model's KV cache eviction cannot take prompts "
                           f"of {first} to {last} tokens (OpenVINO GenAI fails on them): send a shorter or a longer "
                           f"prompt", param=param, code="invalid_value")


def check_prompts_size(sizes: list[tuple[int, int]], best_of: int, limits: GenerationLimits) -> None:
    """Refuse several prompts that would hold more of the engine than the largest one-prompt request can:
    ``best_of_limit`` answers, each of a whole context (each prompt's answers hold its tokens and their new ones),
    or more answers in all than :data:`MAX_PROMPTS` (or ``best_of_limit`` if more)."""
    answers, most = best_of * len(sizes), max(MAX_PROMPTS, limits.best_of_limit)
    if answers > most:
        raise RequestError(f"these {len(sizes)} prompts ask for {answers} answers ({best_of} each), above this "
                           f"server's limit of {most} per request: send fewer prompts, or ask for fewer answers "
                           f"each", param="prompt", code="invalid_value")
    tokens = best_of * sum(prompt + new for prompt, new in sizes)
    limit = limits.best_of_limit * limits.context_length
    if tokens > limit:
        raise RequestError(f"these {len(sizes)} prompts would hold {tokens} tokens in the engine ({best_of} answers "
                           f"x (prompt + max_tokens) each), above this server's limit of {limit} per request (the "
                           f"most answers a request may have x the context length): send fewer or shorter prompts, "
                           f"or set a lower max_tokens", param="prompt", code="invalid_value")


def check_scoring_cost(body: ChatCompletionRequest | CompletionRequest, sizes: list[tuple[int, int]],
                       limit: int) -> None:
    """Refuse a request whose scoring pass (alternatives, or the prompt's log-probabilities) would compute more
    than ``limit`` tokens: each returned choice feeds its prompt and its answer through the scoring model.
    ``sizes``: each prompt's (tokens, max new tokens)."""
    if not (body.alternatives or body.scores_prompt):
        return
    cost = body.n * sum(prompt + new for prompt, new in sizes)
    if cost > limit:
        param = "top_logprobs" if isinstance(body, ChatCompletionRequest) else "logprobs"
        shape = (f"{body.n} choices x ({sizes[0][0]} prompt + {sizes[0][1]} max_tokens)" if len(sizes) == 1 else
                 f"{body.n} choices x the {len(sizes)} prompts' tokens and max_tokens")
        raise RequestError(f"'{param}' would have {cost} tokens scored ({shape}), above this server's limit of "
                           f"{limit} per request: ask for fewer choices or tokens", param=param, code="invalid_value")
