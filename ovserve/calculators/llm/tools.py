"""Tools in a chat request: their declarations, the choice, and the JSON a tool-calling answer must be.

Chat templates without tool support of their own (the default model's) get the tools from OpenVINO
GenAI's ``apply_chat_template``, which puts them in the system prompt with an example of the generic
format ``{"tool_calls": [{"name": ..., "arguments": {...}}]}`` and renders history in the same format.
ovserve holds the answer to that format with constrained decoding: ``required`` and a named function
must call a tool (the named one), with arguments valid for its parameters; ``auto`` may call tools or
answer ``{"content": "..."}``. :class:`~ovserve.calculators.llm.tool_calls.ToolCallParserCalculator`
turns that JSON back into OpenAI's ``tool_calls`` or content.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ovserve.calculators.llm.structured_output import check_schema
from ovserve.engine.protocol import TaggedCalls
from ovserve.errors import RequestError


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class FunctionDefinition(_Model):
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Model):
    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(_Model):
    name: str


class NamedToolChoice(_Model):
    type: Literal["function"]
    function: FunctionName


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class FunctionCall(_Model):
    name: str
    #: The arguments as a JSON object in a string, as OpenAI sends them.
    arguments: str


class ToolCallRequest(_Model):
    """A tool call in the history (an earlier assistant message)."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


def active_tools(tools: list[Tool] | None, choice: ToolChoice | None) -> list[Tool]:
    """The tools the answer may call: none with ``tool_choice: "none"``, the named one alone when one is named.

    Raises :class:`RequestError` for a choice that names no given tool or asks for tools without any."""
    tools = tools or []
    if choice == "none":
        return []
    if choice not in (None, "auto") and not tools:
        raise RequestError("'tool_choice' asks for a tool call, but the request has no tools", param="tool_choice",
                           code="invalid_value")
    if isinstance(choice, NamedToolChoice):
        named = [tool for tool in tools if tool.function.name == choice.function.name]
        if not named:
            raise RequestError(f"'tool_choice' names '{choice.function.name}', which is not among the tools "
                               f"({', '.join(t.function.name for t in tools)})", param="tool_choice",
                               code="invalid_value")
        return named
    return tools


def check_tool_names(tools: list[Tool]) -> None:
    """Refuse a function declared twice."""
    names = [tool.function.name for tool in tools]
    duplicate = next((name for name in names if names.count(name) > 1), None)
    if duplicate is not None:
        raise RequestError(f"'tools' declares the function '{duplicate}' twice", param="tools", code="invalid_value")


def call_schemas(tools: list[Tool], arguments_key: str = "arguments") -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One JSON Schema per tool for a call to it (``name`` and ``arguments_key``), and the definitions they
    refer to. Each tool's parameters are checked as a schema of their own (the error names the tool); then
    its definitions (``$defs``, as nested pydantic models give) move to the top under the tool's index, so
    that its ``$ref``s still resolve inside a combined schema."""
    for index, tool in enumerate(tools):
        if tool.function.parameters is not None:
            check_schema(tool.function.parameters, f"tools[{index}].function.parameters")
    definitions: dict[str, Any] = {}
    calls = [{
        "type": "object",
        "properties": {"name": {"const": tool.function.name},
                       arguments_key: _hoisted(tool.function.parameters or {"type": "object"}, f"tool{i}_",
                                               definitions)},
        "required": ["name", arguments_key],
        "additionalProperties": False,
    } for i, tool in enumerate(tools)]
    return calls, definitions


def _one_of(calls: list[dict[str, Any]]) -> dict[str, Any]:
    return calls[0] if len(calls) == 1 else {"anyOf": calls}


def _with_definitions(schema: dict[str, Any], definitions: dict[str, Any]) -> str:
    return json.dumps({**schema, "$defs": definitions} if definitions else schema)


def tool_call_schema(tools: list[Tool], choice: ToolChoice | None, parallel: bool) -> str:
    """The JSON Schema of an answer in the generic format, for constrained decoding."""
    calls, definitions = call_schemas(tools)
    call_list: dict[str, Any] = {"type": "array", "items": _one_of(calls), "minItems": 1}
    if not parallel:
        call_list["maxItems"] = 1
    with_calls = {"type": "object", "properties": {"tool_calls": call_list}, "required": ["tool_calls"],
                  "additionalProperties": False}
    schema: dict[str, Any] = with_calls
    if choice in (None, "auto"):
        content = {"type": "object", "properties": {"content": {"type": "string"}}, "required": ["content"],
                   "additionalProperties": False}
        schema = {"anyOf": [with_calls, content]}
    return _with_definitions(schema, definitions)


def family_calls(parser: str, tools: list[Tool], parallel: bool) -> TaggedCalls | None:
    """How to force calls to ``tools`` in the format of ``parser`` (``tool_choice`` ``required`` or a named
    function), or ``None`` where ovserve cannot: Mistral's marker is a special token that constrained
    decoding cannot write, and the pythonic format is not JSON."""
    if parser == "hermes3":
        calls, definitions = call_schemas(tools)
        return TaggedCalls("<tool_call>\n", _with_definitions(_one_of(calls), definitions), "\n</tool_call>", "\n",
                           several=parallel)
    if parser == "llama3":
        calls, definitions = call_schemas(tools, "parameters")
        return TaggedCalls("", _with_definitions(_one_of(calls), definitions), "", "; ", several=parallel)
    if parser == "phi4":
        calls, definitions = call_schemas(tools)
        call_list: dict[str, Any] = {"type": "array", "items": _one_of(calls), "minItems": 1}
        if not parallel:
            call_list["maxItems"] = 1
        return TaggedCalls("functools", _with_definitions(call_list, definitions), "")
    return None


def _hoisted(parameters: dict[str, Any], prefix: str, definitions: dict[str, Any]) -> dict[str, Any]:
    """``parameters`` with its definitions moved into ``definitions`` (names prefixed) and its local
    ``$ref``s rewritten to match; a reference to its own root points at a copy of it there."""
    local = {**parameters.get("$defs", {}), **parameters.get("definitions", {})}
    if not local and "$ref" not in json.dumps(parameters):
        return parameters

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: rewrite(v) for k, v in node.items() if k not in ("$defs", "definitions")}
            ref = node.get("$ref")
            if isinstance(ref, str):
                if ref == "#":
                    out["$ref"] = f"#/$defs/{prefix}root"
                else:
                    for base in ("#/$defs/", "#/definitions/"):
                        if ref.startswith(base):
                            out["$ref"] = f"#/$defs/{prefix}{ref[len(base):]}"
            return out
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    root = rewrite(parameters)
    definitions[f"{prefix}root"] = root
    definitions.update({f"{prefix}{name}": rewrite(value) for name, value in local.items()})
    return root


def template_message(role: str, content: str | None, tool_calls: list[ToolCallRequest] | None,
                     tool_call_id: str | None, where: str) -> dict[str, Any]:
    """One history message as chat templates take it: tool-call arguments as objects (Hugging Face's
    convention), tool results with the id of the call they answer."""
    message: dict[str, Any] = {"role": role, "content": content or ""}
    if tool_calls:
        message["tool_calls"] = []
        for index, call in enumerate(tool_calls):
            try:
                arguments = json.loads(call.function.arguments or "{}")
            except json.JSONDecodeError as error:
                raise RequestError(f"'{where}.tool_calls[{index}].function.arguments' is not JSON: {error}",
                                   param=f"{where}.tool_calls[{index}].function.arguments",
                                   code="invalid_value") from None
            message["tool_calls"].append({"id": call.id, "type": "function",
                                          "function": {"name": call.function.name, "arguments": arguments}})
    if tool_call_id is not None:
        message["tool_call_id"] = tool_call_id
    return message


def template_tools(tools: list[Tool]) -> list[dict[str, Any]]:
    """The tools as chat templates take them."""
    return [tool.model_dump(exclude_none=True) for tool in tools]
