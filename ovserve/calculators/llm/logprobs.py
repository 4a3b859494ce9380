"""Tokens' log-probabilities in OpenAI's two shapes: chat's ``content`` list and completions' legacy lists."""

from __future__ import annotations

from collections.abc import Sequence

from ovserve.calculators.llm.answer_schema import ChatLogprobs, CompletionLogprobs, TokenLogprobEntry, TopLogprob
from ovserve.calculators.llm.types import TokenLogprob


def chat_logprobs(tokens: Sequence[TokenLogprob], as_ids: bool = False) -> ChatLogprobs:
    """``choices[i].logprobs`` of a chat answer or chunk: each token with its ``top_logprobs`` best
    alternatives (none when the request asked for 0); ``as_ids`` names tokens ``token_id:N`` (vLLM's
    ``return_tokens_as_token_ids``)."""
    return ChatLogprobs(content=[
        TokenLogprobEntry(token=t.name(as_ids), logprob=t.logprob or 0.0, bytes=list(t.bytes),
                          top_logprobs=[TopLogprob(token=a.name(as_ids), logprob=a.logprob or 0.0,
                                                   bytes=list(a.bytes)) for a in t.top])
        for t in tokens])


def completion_logprobs(tokens: Sequence[TokenLogprob], offset: int, as_ids: bool = False) -> CompletionLogprobs:
    """``choices[i].logprobs`` of a text completion or chunk; ``offset`` is where the first token's text
    starts in the choice's text. Each token's ``top_logprobs`` holds its ``logprobs`` best alternatives and
    the token itself, so up to ``logprobs + 1`` entries, as OpenAI documents; a prompt's first token
    (``echo``) has ``null`` for both, as nothing predicts it. ``as_ids`` names tokens ``token_id:N``; the
    offsets still count the tokens' text."""
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token.token)
    top: list[dict[str, float] | None] = []
    for token in tokens:
        if token.logprob is None:
            top.append(None)
            continue
        best = {a.name(as_ids): a.logprob for a in token.top}
        best.setdefault(token.name(as_ids), token.logprob)
        top.append(best)  # type: ignore[arg-type]
    return CompletionLogprobs(tokens=[t.name(as_ids) for t in tokens], token_logprobs=[t.logprob for t in tokens],
                              top_logprobs=top, text_offset=offsets)
