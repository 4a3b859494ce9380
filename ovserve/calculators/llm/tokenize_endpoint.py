"""``POST /v3/tokenize`` and ``POST /v3/detokenize`` as a graph node, with the tokenizer of the model's own graph.

Shapes are vLLM's, with OVMS's forms accepted too:

- tokenize a ``prompt`` (vLLM; special tokens added by default), OVMS's ``text`` (a string or a list of
  strings), or chat ``messages`` through the model's chat template (vLLM; ``add_generation_prompt``,
  ``tools``, ``chat_template_kwargs``; special tokens not added again by default). The answer has
  ``tokens`` (OVMS's field too), ``count``, ``max_model_len`` and, with ``return_token_strs``, ``token_strs``.
- detokenize ``tokens`` into ``prompt``.
- Anthropic's ``/messages/count_tokens``: a Messages request's prompt, counted as its answer's usage counts it.

The LLM graph's deserialize node hands these requests to :class:`TokenizeEndpointCalculator`, whose answer
the serialize node sends as it is; the embeddings graph answers them in its own node (:func:`encoder_tokens`).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ovserve import Calculator, CalculatorContext, Input, Output, SideInput
from ovserve.calculators.llm.messages_api import MessagesCountRequest
from ovserve.calculators.llm.messages_api import chat_body as messages_chat_body
from ovserve.calculators.llm.schema import ChatCompletionRequest
from ovserve.calculators.llm.tokenize import TokenizerCalculator, check_token_ids
from ovserve.calculators.llm.types import GenerationLimits, ModelParsers
from ovserve.engine.embedder import EncoderTokenizer
from ovserve.engine.tokenizer import TextTokenizer
from ovserve.errors import RequestError
from ovserve.payloads import HttpRequestPayload, HttpResponsePayload
from ovserve.request_body import parse_body


class TokenizeRequest(BaseModel):
    """What to tokenize: exactly one of ``prompt``, ``text`` or ``messages``."""

    model_config = ConfigDict(extra="forbid")

    model: str
    prompt: str | None = None
    text: str | list[str] | None = None
    messages: list[dict[str, Any]] | None = None
    add_special_tokens: bool | None = Field(None, description="default: true for prompt and text, false for "
                                                              "messages (the chat template adds them)")
    add_generation_prompt: bool = True
    continue_final_message: Literal[False] = False
    tools: list[dict[str, Any]] | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    return_token_strs: bool = False

    def texts(self) -> list[str]:
        """The texts of a ``prompt`` or ``text`` request."""
        if self.prompt is not None:
            return [self.prompt]
        return [self.text] if isinstance(self.text, str) else list(self.text or [])

    @model_validator(mode="after")
    def _one_input(self) -> TokenizeRequest:
        given = [name for name in ("prompt", "text", "messages") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of 'prompt', 'text' or 'messages' (got {', '.join(given) or 'none'})")
        if self.messages is None and (self.tools or self.chat_template_kwargs):
            raise ValueError("'tools' and 'chat_template_kwargs' go with 'messages'")
        return self


class DetokenizeRequest(BaseModel):
    """Token ids back to text."""

    model_config = ConfigDict(extra="forbid")

    model: str
    tokens: list[int]
    skip_special_tokens: bool = False


def tokenize(tokenizer: TextTokenizer, limits: GenerationLimits | None, parsers: ModelParsers,
             data: dict[str, Any]) -> dict[str, Any]:
    """The answer to a tokenize request (blocking: tokenizing takes milliseconds for long text)."""
    request: TokenizeRequest = parse_body(TokenizeRequest, data)
    if request.messages is not None:
        texts, special = [_chat_text(tokenizer, parsers, request)], bool(request.add_special_tokens)
    else:
        texts, special = request.texts(), request.add_special_tokens is not False
    token_lists = [tokenizer.encode_whole(text, add_special_tokens=special).tolist() for text in texts]
    answer = _answer(request, token_lists, limits.context_length if limits else None)
    if request.return_token_strs:
        strs = [[tokenizer.token_bytes(t).decode("utf-8", "replace") for t in tokens] for tokens in token_lists]
        answer["token_strs"] = strs if isinstance(request.text, list) else strs[0]
    return answer


def encoder_tokens(encoder: EncoderTokenizer, data: dict[str, Any]) -> dict[str, Any]:
    """An embedding model's answer to a tokenize request: its tokenizer always adds its special tokens
    ([CLS] ... [SEP]); there is no chat template and no detokenizer."""
    request: TokenizeRequest = parse_body(TokenizeRequest, data)
    for name in ("messages", "return_token_strs"):
        if getattr(request, name) not in (None, False):
            raise RequestError(f"'{name}' needs a chat model; this is an embedding model", param=name,
                               code="unsupported_parameter")
    if request.add_special_tokens is False:
        raise RequestError("an embedding model's tokenizer always adds its special tokens", code="invalid_value",
                           param="add_special_tokens")
    return _answer(request, encoder.tokenize(request.texts()), encoder.settings.max_length)


def _answer(request: TokenizeRequest, token_lists: list[list[int]], max_model_len: int | None) -> dict[str, Any]:
    """vLLM's answer; OVMS's list of texts in gives lists of tokens and counts out."""
    if isinstance(request.text, list):
        return {"max_model_len": max_model_len, "tokens": token_lists, "count": [len(t) for t in token_lists]}
    return {"max_model_len": max_model_len, "tokens": token_lists[0], "count": len(token_lists[0])}


def _chat_text(tokenizer: TextTokenizer, parsers: ModelParsers, request: TokenizeRequest) -> str:
    """The chat template applied as for a chat completion with these messages and tools."""
    body = parse_body(ChatCompletionRequest, {"model": request.model, "messages": request.messages,
                                          "tools": request.tools, "chat_template_kwargs": request.chat_template_kwargs})
    text, _ = TokenizerCalculator.prompt_text(tokenizer, body, parsers, request.add_generation_prompt)
    return text


def count_tokens(tokenizer: TextTokenizer, parsers: ModelParsers, data: dict[str, Any]) -> dict[str, Any]:
    """Anthropic's ``/messages/count_tokens``: the ``input_tokens`` a Messages request with this prompt (system,
    messages, tools, tool choice, thinking) would be charged, from the prompt the chat template makes of it."""
    request = parse_body(MessagesCountRequest, data)
    body = parse_body(ChatCompletionRequest, messages_chat_body(request))
    text, special = TokenizerCalculator.prompt_text(tokenizer, body, parsers)
    return {"input_tokens": int(tokenizer.encode_whole(text, add_special_tokens=special).size)}


def detokenize(tokenizer: TextTokenizer, data: dict[str, Any]) -> dict[str, Any]:
    """The answer to a detokenize request."""
    request: DetokenizeRequest = parse_body(DetokenizeRequest, data)
    check_token_ids(tokenizer, request.tokens, "tokens")
    return {"prompt": tokenizer.decode(request.tokens, skip_special_tokens=request.skip_special_tokens)}


class TokenizeEndpointCalculator(Calculator):
    """Answers ``/tokenize`` and ``/detokenize`` with the model's tokenizer (in a thread: long texts take
    milliseconds); the serialize node sends the answer as it is."""

    runs_in_thread = True

    HTTP_REQUEST_PAYLOAD = Input(HttpRequestPayload, doc="a /tokenize or /detokenize request")
    TOKENIZER = SideInput(TextTokenizer)
    LIMITS = SideInput(GenerationLimits, optional=True)
    PARSERS = SideInput(ModelParsers, optional=True, doc="for tools in a chat template (default: generic)")
    HTTP_RESPONSE_PAYLOAD = Output(HttpResponsePayload, doc="the answer, as JSON")

    def process(self, ctx: CalculatorContext) -> None:
        payload: HttpRequestPayload = ctx.value(self.HTTP_REQUEST_PAYLOAD)
        if not isinstance(payload.json, dict):
            raise RequestError("the request body must be a JSON object", code="invalid_json")
        tokenizer: TextTokenizer = ctx.side["TOKENIZER"]
        if payload.uri.endswith("/detokenize"):
            answer = detokenize(tokenizer, payload.json)
        elif payload.uri.endswith("/count_tokens"):
            answer = count_tokens(tokenizer, ctx.side.get("PARSERS") or ModelParsers(), payload.json)
        else:
            answer = tokenize(tokenizer, ctx.side.get("LIMITS"), ctx.side.get("PARSERS") or ModelParsers(),
                              payload.json)
        ctx.send(self.HTTP_RESPONSE_PAYLOAD, HttpResponsePayload(json.dumps(answer).encode()))
