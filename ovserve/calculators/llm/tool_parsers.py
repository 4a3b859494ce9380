"""Tool-call formats of model families: where a call starts in the text, and how a whole answer parses.

``generic`` is ovserve's format for templates without tools of their own (the whole answer is JSON,
held to it by constrained decoding). The others are what models trained for tools write, chosen by
OVMS's ``tool_parser`` option, ``ovserve serve --tool-parser``, or the chat template (:func:`detect`):

- ``hermes3`` (Hermes, Qwen 2.5 and 3): ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, repeated;
- ``llama3`` (Llama 3.1 to 3.3): ``{"name": ..., "parameters": {...}}``, optionally after ``<|python_tag|>``,
  several separated by ``;``;
- ``mistral``: ``[TOOL_CALLS] [{"name": ..., "arguments": {...}}]``, or ``[TOOL_CALLS]name[ARGS]{...}``;
- ``pythonic`` (Llama 3.2 and 4): ``[get_weather(city="Paris"), ...]``;
- ``phi4``: ``functools[{"name": ..., "arguments": {...}}]``.
"""

from __future__ import annotations

import ast
import json
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ovserve.calculators.llm.types import ModelParsers, ToolCall
from ovserve.engine.tokenizer import TextTokenizer


@dataclass(frozen=True)
class ToolParser:
    """One family's format."""

    name: str
    #: Text that starts the tool calls; text before it is content.
    markers: tuple[str, ...]
    #: Whether a call can only start the answer (else anywhere in it).
    at_start: bool
    #: The whole answer → (content or ``None``, calls); an answer that is not a call is content.
    parse: Callable[[str], tuple[str | None, tuple[ToolCall, ...]]]


def new_call(name: object, arguments: object) -> ToolCall:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments if arguments is not None else {},
                                                                   ensure_ascii=False, allow_nan=False)
    return ToolCall(f"call_{uuid.uuid4().hex[:24]}", str(name), text)


def _is_object_or_none(arguments: Any) -> bool:
    """Whether a call's arguments are an object: a JSON object, the text of one (some models write that), or left
    out (no arguments). Anything else (``"arguments": 5``) makes the object no call: clients parse arguments as an
    object."""
    if arguments is None or isinstance(arguments, dict):
        return True
    if not isinstance(arguments, str):
        return False
    try:
        return isinstance(json.loads(arguments), dict)
    except (ValueError, RecursionError):
        return False


def _calls_from_objects(objects: list[Any], arguments_key: str = "arguments") -> tuple[ToolCall, ...] | None:
    if not objects or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in objects):
        return None
    arguments = [o.get(arguments_key, o.get("arguments", o.get("parameters"))) for o in objects]
    if not all(_is_object_or_none(a) for a in arguments):
        return None
    return tuple(new_call(o["name"], a) for o, a in zip(objects, arguments, strict=True))


def _content(text: str) -> str | None:
    return text.strip() or None


def parse_generic(text: str) -> tuple[str | None, tuple[ToolCall, ...]]:
    try:
        answer = json.loads(text)
    except json.JSONDecodeError:
        return text, ()
    if not isinstance(answer, dict):
        return text, ()
    calls = _calls_from_objects(answer.get("tool_calls") or [])
    if calls:
        return None, calls
    content = answer.get("content")
    return (content if isinstance(content, str) else text), ()


_HERMES = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


def parse_hermes(text: str) -> tuple[str | None, tuple[ToolCall, ...]]:
    """Calls in ``<tool_call>`` tags; a last call that ``max_tokens`` cut off after complete ones is dropped."""
    bodies = _HERMES.findall(text)
    if len(bodies) > 1 and not text.rstrip().endswith("</tool_call>"):
        try:
            json.loads(bodies[-1])
        except json.JSONDecodeError:
            bodies.pop()  # the call max_tokens cut off; one that ended without its closing tag stays
    try:
        calls = _calls_from_objects([json.loads(body) for body in bodies])
    except json.JSONDecodeError:
        calls = None
    if not calls:
        return text, ()
    return _content(text[:text.index("<tool_call>")]), calls


def parse_llama3(text: str) -> tuple[str | None, tuple[ToolCall, ...]]:
    """JSON calls one after another (``;`` or spaces between); a last one cut off by ``max_tokens`` is dropped."""
    body = text.strip().removeprefix("<|python_tag|>").strip()
    objects = []
    decoder = json.JSONDecoder()
    position = 0
    try:
        while position < len(body):
            value, end = decoder.raw_decode(body, position)
            objects.append(value)
            position = end
            while position < len(body) and body[position] in " \n;":
                position += 1
    except json.JSONDecodeError:
        if not objects:
            return text, ()  # the calls, if any, are the objects before max_tokens cut the answer
    calls = _calls_from_objects(objects, "parameters")
    return (None, calls) if calls else (text, ())


def parse_mistral(text: str) -> tuple[str | None, tuple[ToolCall, ...]]:
    before, marker, rest = text.partition("[TOOL_CALLS]")
    if not marker:
        return text, ()
    rest = rest.strip()
    calls: tuple[ToolCall, ...] | None = None
    if rest.startswith("["):
        try:
            objects = json.loads(rest)
        except json.JSONDecodeError:
            objects = None
        calls = _calls_from_objects(objects) if isinstance(objects, list) else None
    else:  # name[ARGS]{...}, repeated after further [TOOL_CALLS]
        found = []
        for part in text.split("[TOOL_CALLS]")[1:]:
            name, args_marker, arguments = part.partition("[ARGS]")
            if not args_marker:
                break
            try:
                found.append({"name": name.strip(), "arguments": json.loads(arguments.strip())})
            except json.JSONDecodeError:
                break
        calls = _calls_from_objects(found)
    return (_content(before), calls) if calls else (text, ())


def parse_pythonic(text: str) -> tuple[str | None, tuple[ToolCall, ...]]:
    body = text.strip().removeprefix("<|python_start|>").removesuffix("<|python_end|>").strip()
    try:
        tree = ast.parse(body, mode="eval").body
    except SyntaxError:
        return text, ()
    items = tree.elts if isinstance(tree, ast.List) else [tree]
    objects = []
    for item in items:
        if not isinstance(item, ast.Call) or not isinstance(item.func, ast.Name) or item.args:
            return text, ()
        try:
            arguments = {kw.arg: ast.literal_eval(kw.value) for kw in item.keywords if kw.arg}
        except ValueError:
            return text, ()
        objects.append({"name": item.func.id, "arguments": arguments})
    calls = _calls_from_objects(objects)
    return (None, calls) if calls else (text, ())


def parse_phi4(text: str) -> tuple[str | None, tuple[ToolCall, ...]]:
    before, marker, rest = text.partition("functools")
    if not marker:
        return text, ()
    try:
        objects = json.loads(rest.strip())
    except json.JSONDecodeError:
        return text, ()
    calls = _calls_from_objects(objects) if isinstance(objects, list) else None
    return (_content(before), calls) if calls else (text, ())


PARSERS: dict[str, ToolParser] = {parser.name: parser for parser in (
    ToolParser("generic", ("{",), True, parse_generic),
    ToolParser("hermes3", ("<tool_call>",), False, parse_hermes),
    ToolParser("llama3", ("{", "<|python_tag|>"), True, parse_llama3),
    ToolParser("mistral", ("[TOOL_CALLS]",), False, parse_mistral),
    ToolParser("pythonic", ("[", "<|python_start|>"), True, parse_pythonic),
    ToolParser("phi4", ("functools",), False, parse_phi4),
)}


def detect(chat_template: str) -> str | None:
    """The parser a chat template's own tool format needs, or ``None`` when the template has no tools
    (then the generic format applies)."""
    if "tools" not in chat_template:
        return None
    for needle, name in (("<tool_call>", "hermes3"), ("[TOOL_CALLS]", "mistral"), ("functools", "phi4"),
                         ("<|python_start|>", "pythonic"), ("<|python_tag|>", "llama3"), ("ipython", "llama3")):
        if needle in chat_template:
            return name
    return None


def special_markers(tokenizer: TextTokenizer, markers: Iterable[str]) -> tuple[tuple[int, str], ...]:
    """Those of ``markers`` that are one special token of the model, which decoding drops: (id, text)."""
    found = []
    for marker in markers:
        ids = tokenizer.encode(marker, add_special_tokens=False).tolist()
        if len(ids) == 1 and not tokenizer.decode(ids):
            found.append((int(ids[0]), marker))
    return tuple(found)


#: OVMS's names for the formats ovserve parses the same way.
ALIASES = {"devstral": "mistral", "qwen3": "hermes3", "hermes": "hermes3", "llama4": "pythonic"}


def choose(option: str | None, chat_template: str) -> ModelParsers:
    """The tool-call format of a model: the graph's ``tool_parser`` option (``none``: no parsing), else the
    one its chat template implies (generic when the template has no tools of its own)."""
    if option is None:
        return ModelParsers(detect(chat_template) if "tools" in chat_template else "generic")
    if option == "none":
        return ModelParsers(None)
    name = ALIASES.get(option, option)
    return ModelParsers(name) if name in PARSERS else ModelParsers(None, unsupported=option)
