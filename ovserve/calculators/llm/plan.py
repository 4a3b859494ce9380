"""A request's plan: how its answer is cut, parsed and scored, decided once when the request is tokenized.

The tokenize node works it out from the request and the model's parsers and carries it on the prompt
(:class:`RequestPlan`, on :attr:`Prompt.plan`); the nodes after the engine (score, detokenize, parse_reasoning,
parse_tools) read it and derive nothing again. The engine's own settings (:class:`SamplingParams`) come from the
same decision: the tool format that shapes the engine's guided output is the one the tool-call node parses.
"""

from __future__ import annotations

from ovserve.calculators.llm.schema import ChatCompletionRequest, CompletionRequest
from ovserve.calculators.llm.types import ModelParsers, RequestPlan
from ovserve.engine.tokenizer import TextTokenizer


def thinking_asked(body: object) -> bool:
    """Whether the request asked for thinking through the template (``enable_thinking: true``, or an effort)."""
    kwargs = getattr(body, "chat_template_kwargs", None) or {}
    effort = getattr(body, "reasoning_effort", None)
    return kwargs.get("enable_thinking") is True or effort not in (None, "none")


def thinking_off(body: object) -> bool:
    """Whether the request turned thinking off (then the answer is all content, streamed as it comes)."""
    kwargs = getattr(body, "chat_template_kwargs", None) or {}
    return getattr(body, "reasoning_effort", None) == "none" or kwargs.get("enable_thinking") is False


def plan_request(body: ChatCompletionRequest | CompletionRequest, parsers: ModelParsers,
                 tokenizer: TextTokenizer) -> RequestPlan:
    """The plan for a validated request on a model with these parsers."""
    chat = isinstance(body, ChatCompletionRequest)
    tool_format = parsers.tool_parser if chat and body.callable_tools() else None  # type: ignore[union-attr]
    echo = ()
    if body.echoes_prompt:
        echo = tuple(p if isinstance(p, str) else tokenizer.decode(p) for p in body.prompts())  # type: ignore[union-attr]
    return RequestPlan(
        stops=body.stop_strings, include_stop=body.include_stop_str_in_output, echo=echo,
        tool_format=tool_format,
        one_call=tool_format is not None and not body.parallel_tool_calls,  # type: ignore[union-attr]
        reasoning=chat and parsers.reasoning_parser is not None and not thinking_off(body),
        reasoning_opened=parsers.reasoning_opened_by_template or thinking_asked(body),
        alternatives=body.alternatives, scores_prompt=body.scores_prompt,
        logprobs_param="top_logprobs" if chat else "logprobs",
    )
