"""The Anthropic Messages API's request, declared, and the chat completion it asks of the LLM graph.

A ``/messages`` request becomes the chat completion it means (``system`` as the system message, ``tool_use`` blocks
as an assistant's ``tool_calls``, ``tool_result`` blocks as tool messages, ``tool_choice`` ``any`` as ``required``,
``output_config.format`` as ``response_format``) and runs through the same nodes; the serialize node writes
Anthropic's message object and events for it (:mod:`ovserve.calculators.llm.messages_writer`).
``/messages/count_tokens`` takes the same request without ``max_tokens`` and counts the prompt it would make.

What is not served and would change the answer is refused by name (images, documents, server tools, prefill, an
``output_config.effort`` other than the default, context edits other than clearing earlier thinking); what changes
nothing here (``cache_control``, ``metadata``, ``service_tier``, ``speed``, ``inference_geo``, ``diagnostics``) is
accepted and logged once. ``thinking`` turns the chat template's ``enable_thinking`` on or off: a model without a
reasoning parser has no thinking to give, and answers without thinking blocks.
"""

from __future__ import annotations

import json
import typing
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, StrictBool, Tag, model_validator

from ovserve.errors import RequestError

#: The most stop sequences (as for the chat path's ``stop``), and their longest length.
MAX_STOP_SEQUENCES = 16
MAX_STOP_LENGTH = 1000
#: Anthropic's smallest thinking budget.
MIN_THINKING_BUDGET = 1024
#: Fields accepted and ignored: they do not change the answer on this server.
IGNORED_FIELDS = frozenset({"cache_control", "metadata", "service_tier", "speed", "inference_geo", "diagnostics"})
#: Beta fields the SDK sends that would change the answer, and that are not served: refused by name when set.
UNSERVED_FIELDS = {
    "mcp_servers": "(Anthropic's MCP connector) is not served: the model would have tools this server cannot call; "
                   "declare them in 'tools' and run them in the client",
    "compaction": "(server-side context compaction) is not served: the prompt would not be the one sent",
}


class _Block(BaseModel):
    """A request object: fields Anthropic may add later are accepted (``cache_control`` and the like)."""

    model_config = ConfigDict(extra="allow")


class CacheControl(_Block):
    """Prompt-caching marks: accepted and ignored (the engine's prefix cache needs none)."""

    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


class TextBlock(_Block):
    type: Literal["text"]
    text: str
    cache_control: CacheControl | None = None
    #: Citations of an earlier answer's text: the text is what the model sees.
    citations: list[dict[str, Any]] | None = None


class ToolUseBlock(_Block):
    """A call an earlier answer made."""

    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]
    cache_control: CacheControl | None = None


class ToolResultBlock(_Block):
    """What a tool returned (in a user message), for the call ``tool_use_id``."""

    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[TextBlock] = ""
    is_error: bool = False
    cache_control: CacheControl | None = None


class ThinkingBlock(_Block):
    """An earlier answer's thinking: dropped from the prompt, as chat templates of models that think drop earlier
    turns' reasoning."""

    type: Literal["thinking"]
    thinking: str
    signature: str


class RedactedThinkingBlock(_Block):
    type: Literal["redacted_thinking"]
    data: str


def _by_type(what: str, *models: type[BaseModel]) -> Any:
    """A union of ``models`` chosen by their ``type`` field, whose errors name the place and the type, not the
    tag (tagged by class name, which the error formatter takes for a union member)."""
    tags = {value: model.__name__ for model in models
            for value in typing.get_args(model.model_fields["type"].annotation) if isinstance(value, str)}

    def tag(value: Any) -> str | None:
        kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
        return tags.get(kind) if isinstance(kind, str) else None

    members = tuple(Annotated[model, Tag(model.__name__)] for model in models)
    served = ", ".join(repr(value) for value in tags)
    return Annotated[Union[members],  # noqa: UP007 (a union built at run time)
                     Discriminator(tag, custom_error_type="invalid_type",
                                   custom_error_message=f"'type' must be one of {served} ({what})")]


ContentBlock = _by_type("the content block types served", TextBlock, ToolUseBlock, ToolResultBlock, ThinkingBlock,
                        RedactedThinkingBlock)


def _as_blocks(content: object) -> object:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


class Message(_Block):
    """One turn: ``user``, ``assistant`` or (in recent API versions) ``system``."""

    role: Literal["user", "assistant", "system"]
    #: A string is one text block.
    content: Annotated[list[ContentBlock], BeforeValidator(_as_blocks)]


class CustomTool(_Block):
    """A tool the client runs. Anthropic's server tools (``web_search_...``, ``bash_...``) are not served."""

    type: Literal["custom"] | None = None
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    description: str | None = None
    input_schema: dict[str, Any]
    cache_control: CacheControl | None = None
    strict: bool | None = None
    #: How finely the call's input streams: it streams as the tool-call parser gives it, whatever this says.
    eager_input_streaming: bool | None = None
    #: Tool search and programmatic calling are not served: only the neutral values are taken.
    defer_loading: Literal[False] = False
    allowed_callers: list[Literal["direct"]] | None = None
    input_examples: Annotated[list[dict[str, Any]], Field(max_length=0)] | None = None


class ToolChoiceAuto(_Block):
    type: Literal["auto"]
    disable_parallel_tool_use: bool = False


class ToolChoiceAny(_Block):
    type: Literal["any"]
    disable_parallel_tool_use: bool = False


class ToolChoiceTool(_Block):
    type: Literal["tool"]
    name: str
    disable_parallel_tool_use: bool = False


class ToolChoiceNone(_Block):
    type: Literal["none"]


ToolChoice = _by_type("tool choices", ToolChoiceAuto, ToolChoiceAny, ToolChoiceTool, ToolChoiceNone)


class ThinkingEnabled(_Block):
    type: Literal["enabled"]
    budget_tokens: Annotated[int, Field(ge=MIN_THINKING_BUDGET)]
    display: Literal["summarized", "omitted"] | None = None


class ThinkingAdaptive(_Block):
    type: Literal["adaptive", "between_tools"]
    display: Literal["summarized", "omitted"] | None = None


class ThinkingDisabled(_Block):
    type: Literal["disabled"]


Thinking = _by_type("thinking settings", ThinkingEnabled, ThinkingAdaptive, ThinkingDisabled)


class OutputFormat(_Block):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(_Block):
    """``format``: the answer is JSON held to the schema (the structured-output path). ``effort``: only the default
    (``high``) is served; a model here has no other level of effort."""

    format: OutputFormat | None = None
    effort: Literal["high"] | None = None


class ClearThinking(_Block):
    """A context edit that drops earlier turns' thinking: thinking from earlier turns never reaches the prompt here,
    whatever it keeps."""

    type: Literal["clear_thinking_20251015"]
    keep: Any = None


class ContextManagement(_Block):
    """The context-management beta (Claude Code sends it). Only thinking edits are taken; an edit that clears earlier
    tool results (``clear_tool_uses_...``) would change the prompt and is not served."""

    edits: list[_by_type("context edits served", ClearThinking)] = []  # type: ignore[valid-type]


class Metadata(_Block):
    user_id: str | None = None


class MessagesCountRequest(_Block):
    """``POST /v1/messages/count_tokens``: the prompt of a Messages request, without the settings of its answer."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    model: str
    messages: Annotated[list[Message], Field(min_length=1, max_length=100_000)]
    system: str | list[TextBlock] | None = None
    tools: Annotated[list[CustomTool], Field(max_length=128)] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    output_config: OutputConfig | None = None
    cache_control: CacheControl | None = None
    speed: Literal["standard", "fast"] | None = None
    context_management: ContextManagement | None = None
    #: Code execution containers (with skills) go with server tools: not served.
    container: None = None

    @model_validator(mode="after")
    def _checks(self) -> MessagesCountRequest:
        extra = self.model_extra or {}
        for name, why in UNSERVED_FIELDS.items():
            if extra.get(name):
                raise RequestError(f"'{name}' {why}", param=name, code="unsupported_parameter")
        if self.messages[-1].role == "assistant":
            where = f"messages[{len(self.messages) - 1}]"
            raise RequestError(f"'{where}' is the assistant's: prefill (continuing an answer from a last assistant "
                               f"message) is not served; end with a user message", param=f"{where}.role",
                               code="invalid_value")
        if isinstance(self.tool_choice, ToolChoiceTool) and self.tool_choice.name not in {
                tool.name for tool in self.tools or ()}:
            raise RequestError(f"'tool_choice' names '{self.tool_choice.name}', which is not among the tools",
                               param="tool_choice.name", code="invalid_value")
        return self


class MessagesRequest(MessagesCountRequest):
    """``POST /v1/messages``."""

    max_tokens: Annotated[int, Field(ge=1)]
    stream: StrictBool = False
    stop_sequences: Annotated[list[Annotated[str, Field(min_length=1, max_length=MAX_STOP_LENGTH)]],
                              Field(max_length=MAX_STOP_SEQUENCES)] | None = None
    #: Sent by older clients (the current SDK has no such parameters, but passes them on raw).
    temperature: Annotated[float, Field(ge=0, le=1)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    metadata: Metadata | None = None
    service_tier: Literal["auto", "standard_only"] | None = None
    inference_geo: str | None = None
    diagnostics: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _budget(self) -> MessagesRequest:
        if isinstance(self.thinking, ThinkingEnabled) and self.thinking.budget_tokens >= self.max_tokens:
            raise RequestError(f"'thinking.budget_tokens' ({self.thinking.budget_tokens}) must be less than "
                               f"'max_tokens' ({self.max_tokens})", param="thinking.budget_tokens",
                               code="invalid_value")
        return self


def _text(blocks: str | list[TextBlock]) -> str:
    return blocks if isinstance(blocks, str) else "\n".join(block.text for block in blocks)


def chat_messages(request: MessagesCountRequest) -> list[dict[str, Any]]:
    """``system`` and the turns as chat messages: a user turn's ``tool_result`` blocks become tool messages (in
    their place among its text), an assistant turn's ``tool_use`` blocks its ``tool_calls``; thinking from earlier
    turns is left out. A failed tool's result (``is_error``) is marked ``Error:`` for the model to see."""
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": _text(request.system)})
    for message in request.messages:
        messages += _turn(message.role, message.content)
    return messages


def _turn(role: str, blocks: list[Any]) -> list[dict[str, Any]]:
    """One turn of content blocks as chat messages: runs of text and calls, with tool results between them."""
    messages: list[dict[str, Any]] = []
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in [*blocks, None]:
        if (block is None or isinstance(block, ToolResultBlock)) and (texts or calls):
            entry: dict[str, Any] = {"role": role, "content": "\n".join(texts) if texts else None}
            if calls:
                entry["tool_calls"] = calls
            messages.append(entry)
            texts, calls = [], []
        if isinstance(block, TextBlock):
            texts.append(block.text)
        elif isinstance(block, ToolUseBlock):
            calls.append({"id": block.id, "type": "function",
                          "function": {"name": block.name, "arguments": json.dumps(block.input)}})
        elif isinstance(block, ToolResultBlock):
            content = _text(block.content)
            messages.append({"role": "tool", "tool_call_id": block.tool_use_id,
                             "content": f"Error: {content}" if block.is_error else content})
    return messages


def _where(message_index: int, block_index: int | None = None) -> str:
    return f"messages[{message_index}]" + (f".content[{block_index}]" if block_index is not None else "")


def check_roles(request: MessagesCountRequest) -> None:
    """Refuse blocks in a turn whose role cannot hold them (tool results come from the user, calls from the
    assistant, thinking from the assistant)."""
    allowed = {"user": (TextBlock, ToolResultBlock), "assistant": (TextBlock, ToolUseBlock, ThinkingBlock,
                                                                    RedactedThinkingBlock), "system": (TextBlock,)}
    for number, message in enumerate(request.messages):
        for index, block in enumerate(message.content):
            if not isinstance(block, allowed[message.role]):
                where = _where(number, index)
                raise RequestError(f"'{where}' is a {block.type} block, which a {message.role} message cannot hold",
                                   param=f"{where}.type", code="invalid_value")


def chat_body(request: MessagesCountRequest) -> dict[str, Any]:
    """The chat completion request this Messages request means. Stop sequences are kept at the end of the text
    (``include_stop_str_in_output``), so that the answer can say which one matched; the writer takes it off."""
    check_roles(request)
    body: dict[str, Any] = {"model": request.model, "messages": chat_messages(request), "stream": False}
    if isinstance(request, MessagesRequest):
        body["stream"] = request.stream
        body["max_completion_tokens"] = request.max_tokens
        for name in ("temperature", "top_p", "top_k"):
            if getattr(request, name) is not None:
                body[name] = getattr(request, name)
        if request.stop_sequences:
            body["stop"] = request.stop_sequences
            body["include_stop_str_in_output"] = True
    choice = request.tool_choice
    if request.tools and not isinstance(choice, ToolChoiceNone):
        body["tools"] = [{"type": "function", "function": {
            "name": tool.name, "description": tool.description, "parameters": tool.input_schema,
            **({"strict": tool.strict} if tool.strict is not None else {})}} for tool in request.tools]
    if isinstance(choice, ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool):
        if not request.tools:
            raise RequestError("'tool_choice' is set, but the request has no tools", param="tool_choice",
                               code="invalid_value")
        body["tool_choice"] = ("auto" if isinstance(choice, ToolChoiceAuto) else "required"
                               if isinstance(choice, ToolChoiceAny) else
                               {"type": "function", "function": {"name": choice.name}})
        body["parallel_tool_calls"] = not choice.disable_parallel_tool_use
    if request.thinking is not None:
        body["chat_template_kwargs"] = {"enable_thinking": request.thinking.type != "disabled"}
    output_format = request.output_config.format if request.output_config else None
    if output_format is not None:
        if body.get("tools"):
            raise RequestError("'output_config.format' cannot be combined with tools the answer may call",
                               param="output_config.format", code="unsupported_parameter")
        body["response_format"] = {"type": "json_schema", "json_schema": {
            "name": "output", "schema": output_format.schema_, "strict": True}}
    return body
