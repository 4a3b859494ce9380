"""The OpenAI Responses API's request, declared, and what it asks of the chat pipeline.

A ``/responses`` request becomes the chat completion it means (``instructions`` as the system message, input
items as messages, function tools and ``text.format`` as chat tools and ``response_format``) and runs through
the same nodes; the serialize node writes Responses objects and events for it
(:mod:`ovserve.calculators.llm.responses_writer`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ovserve.calculators.llm.schema import Metadata
from ovserve.errors import RequestError


class TextFormat(BaseModel):
    """``text.format``: plain text, any JSON object, or JSON held to a schema."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None
    description: str | None = None


class TextSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: TextFormat = Field(default_factory=TextFormat)
    verbosity: Literal["medium"] | None = None


class ResponsesRequest(BaseModel):
    """``POST /v3/responses``. Fields that would change the answer and are not served are declared so that a
    request setting them gets a 400 naming them (``background``, ``include``, non-function tools, ...)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Literal["auto", "none", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextSettings | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    store: bool = True
    previous_response_id: str | None = None
    metadata: Metadata | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    service_tier: Literal["auto", "default"] | None = None
    truncation: Literal["disabled"] | None = None
    include: list[Literal["message.output_text.logprobs"]] | None = Field(None, max_length=0)
    top_logprobs: Literal[0] | None = None
    reasoning: dict[str, Any] | None = None
    background: Literal[False] | None = None
    max_tool_calls: int | None = None
    conversation: None = None
    prompt: None = None

    def input_items(self) -> list[dict[str, Any]]:
        """``input`` as items: a string is one user message."""
        if isinstance(self.input, str):
            return [{"type": "message", "role": "user", "content": self.input}]
        return self.input


def _text_of(content: Any, where: str) -> str:
    """A message's content as text: a string, or parts of type input_text / output_text."""
    content = _content_of(content, where)
    if not isinstance(content, str):
        raise RequestError(f"'{where}.content' holds an input_image; only a message's content may",
                           param=f"{where}.content", code="unsupported_parameter")
    return content


def _image_part(part: dict[str, Any], where: str) -> dict[str, Any]:
    """An ``input_image`` part as chat's ``image_url`` part; errors about its image name ``where``."""
    if not isinstance(part.get("image_url"), str):
        why = "file_id is not served" if part.get("file_id") is not None else "it has no image_url"
        raise RequestError(f"'{where}' is an input_image without an image_url string ({why}): send the image as a "
                           f"data URL", param=f"{where}.image_url", code="invalid_value")
    detail = part.get("detail")
    return {"type": "image_url", "image_url": {"url": part["image_url"], **({"detail": detail} if detail else {})},
            "where": f"{where}.image_url"}


def _content_of(content: Any, where: str) -> str | list[dict[str, Any]]:
    """A message's content: a string, or parts of type input_text / output_text, and input_image (then a list of
    chat content parts)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise RequestError(f"'{where}.content' must be a string or a list of text parts", param=f"{where}.content",
                           code="invalid_value")
    parts: list[dict[str, Any]] = []
    for number, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else type(part).__name__
        if kind == "input_image":
            parts.append(_image_part(part, f"{where}.content[{number}]"))
        elif kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": str(part.get("text", ""))})
        else:
            raise RequestError(f"'{where}.content[{number}]' is of type {kind!r}; only text and image parts are "
                               f"served", param=f"{where}.content[{number}].type", code="unsupported_parameter")
    if any(part["type"] == "image_url" for part in parts):
        return parts
    return "".join(part["text"] for part in parts)


def chat_messages(request: ResponsesRequest) -> list[dict[str, Any]]:
    """``instructions`` and the input items as chat messages; consecutive function calls share one assistant
    message, and a function call's output is a tool message."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": request.instructions}] if request.instructions \
        else []
    for number, item in enumerate(request.input_items()):
        where = f"input[{number}]"
        if not isinstance(item, dict):
            raise RequestError(f"'{where}' must be an object", param=where, code="invalid_value")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise RequestError(f"'{where}.role' must be user, assistant, system or developer, not {role!r}",
                                   param=f"{where}.role", code="invalid_value")
            messages.append({"role": role, "content": _content_of(item.get("content"), where)})
        elif kind == "function_call":
            call = {"id": str(item.get("call_id")), "type": "function",
                    "function": {"name": str(item.get("name")), "arguments": str(item.get("arguments", ""))}}
            if messages and messages[-1]["role"] == "assistant" and messages[-1].get("tool_calls"):
                messages[-1]["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            messages.append({"role": "tool", "tool_call_id": str(item.get("call_id")),
                             "content": output if isinstance(output, str) else _text_of(output, where)})
        else:
            raise RequestError(f"'{where}.type' {kind!r} is not served; input items are messages, function_call "
                               f"and function_call_output", param=f"{where}.type", code="unsupported_parameter")
    return messages


def chat_body(request: ResponsesRequest) -> dict[str, Any]:
    """The chat completion request this Responses request means."""
    body: dict[str, Any] = {"model": request.model, "messages": chat_messages(request), "stream": request.stream}
    if request.stream:
        body["stream_options"] = {"include_usage": True}
    for name, value in (("max_completion_tokens", request.max_output_tokens), ("temperature", request.temperature),
                        ("top_p", request.top_p), ("parallel_tool_calls", request.parallel_tool_calls),
                        ("user", request.user)):
        if value is not None:
            body[name] = value
    if request.reasoning and request.reasoning.get("effort") is not None:
        body["reasoning_effort"] = request.reasoning["effort"]
    if request.tools:
        body["tools"] = [_chat_tool(tool, number) for number, tool in enumerate(request.tools)]
    if request.tool_choice is not None:
        choice = request.tool_choice
        body["tool_choice"] = choice if isinstance(choice, str) else {
            "type": "function", "function": {"name": choice.get("name")}}
    text_format = request.text.format if request.text else None
    if text_format is not None and text_format.type == "json_schema":
        body["response_format"] = {"type": "json_schema", "json_schema": {
            "name": text_format.name or "response", "schema": text_format.schema_ or {}, "strict": text_format.strict}}
    elif text_format is not None and text_format.type == "json_object":
        body["response_format"] = {"type": "json_object"}
    return body


def _chat_tool(tool: dict[str, Any], number: int) -> dict[str, Any]:
    if tool.get("type") != "function":
        raise RequestError(f"'tools[{number}].type' {tool.get('type')!r} is not served; only function tools are",
                           param=f"tools[{number}].type", code="unsupported_parameter")
    function = {key: tool[key] for key in ("name", "description", "parameters", "strict") if key in tool}
    return {"type": "function", "function": function}
