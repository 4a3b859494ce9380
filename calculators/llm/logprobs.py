"""Tokens' log-probabilities in OpenAI's two shapes: chat's ``content`` list and completions' legacy lists."""

from __future__ import annotations

from collections.abc import Sequence

from ovserve.calculators.llm.schema import ChatLogprobs, CompletionLogprobs, TokenLogprobEntry
from ovserve.calculators.llm.types import TokenLogprob


def chat_logprobs(tokens: Sequence[TokenLogprob]) -> ChatLogprobs:
    """``choices[i].logprobs`` of a chat answer or chunk (no alternatives: ``top_logprobs`` is 0)."""
    return ChatLogprobs(content=[TokenLogprobEntry(token=t.token, logprob=t.logprob, bytes=list(t.bytes),
                                                   top_logprobs=[]) for t in tokens])


def completion_logprobs(tokens: Sequence[TokenLogprob], offset: int) -> CompletionLogprobs:
    """``choices[i].logprobs`` of a text completion or chunk; ``offset`` is where the first token's text
    starts in the choice's text. ``top_logprobs`` holds the chosen token alone (``logprobs: 0``)."""
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token.token)
    return CompletionLogprobs(tokens=[t.token for t in tokens], token_logprobs=[t.logprob for t in tokens],
                              top_logprobs=[{t.token: t.logprob} for t in tokens], text_offset=offsets)
