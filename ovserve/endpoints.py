"""The model endpoints, declared where they are answered: each package of ``ovserve.calculators`` lists the HTTP
endpoints its graphs answer (``ENDPOINTS``, a tuple of :class:`Endpoint`), and the server routes, reads and
documents each from that declaration alone. A new kind of endpoint touches no server code.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel

from ovserve.errors import RequestError


@dataclass(frozen=True)
class Endpoint:
    """A model endpoint: ``POST`` under ``/v3`` and ``/v1`` (and at ``also_at``), answered by the graph of the model
    the request names, or of the only model served of the first of ``kinds`` when it names none."""

    #: The path under ``/v3`` and ``/v1``, e.g. ``/chat/completions``.
    path: str
    #: The kinds of model that answer it (``text_generation``, ``embeddings``, ...), preferred first.
    kinds: tuple[str, ...]
    #: The JSON body's schema, documented in ``/openapi.json``; None: not documented there.
    schema: type[BaseModel] | None = None
    #: The body is a multipart form (files and text fields), not JSON.
    form: bool = False
    #: A form's fields gathered into a list even when sent without the ``[]`` suffix.
    list_fields: tuple[str, ...] = ()
    #: The most files a form may hold.
    max_files: int = 1
    #: Any served model answers it, whatever its kind (``/tokenize``); ``/openapi.json`` then lists them all.
    any_model: bool = False
    #: Other full paths that answer the same (vLLM's root paths, a client's own).
    also_at: tuple[str, ...] = ()


def builtin_endpoints() -> tuple[Endpoint, ...]:
    """Every endpoint the built-in calculator packages declare, in package order."""
    package = importlib.import_module("ovserve.calculators")
    found: list[Endpoint] = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda info: info.name):
        if info.ispkg:
            found += getattr(importlib.import_module(f"ovserve.calculators.{info.name}"), "ENDPOINTS", ())
    paths = [endpoint.path for endpoint in found]
    twice = sorted({path for path in paths if paths.count(path) > 1})
    if twice:
        raise RuntimeError(f"endpoints declared twice: {', '.join(twice)}")
    return tuple(found)


def form_fields(items: Iterable[tuple[str, str]], list_fields: Iterable[str] = ()) -> dict[str, object]:
    """A multipart form's text fields as one dict: a field sent as ``name[]`` (the ``openai`` client's way with lists)
    is gathered into a list under ``name``, as are ``list_fields`` sent without the suffix; other names keep their
    last value."""
    listed = frozenset(list_fields)
    fields: dict[str, object] = {}
    lists: dict[str, list[str]] = {}
    for name, value in items:
        base = name.removesuffix("[]")
        if base != name or base in listed:
            lists.setdefault(base, []).append(value)
        else:
            fields[name] = value
    return {**fields, **lists}


def not_served(uri: str, model: str, what: str, served: Sequence[str]) -> RequestError:
    """The 400 for a request sent to a model whose graph does not answer its path: what the model is (``what``, e.g.
    "a reranker") and the paths it serves."""
    listed = served[0] if len(served) == 1 else f"{', '.join(served[:-1])} and {served[-1]}"
    return RequestError(f"the model '{model}' is {what}: it serves {listed}, not {uri}", param="model",
                        code="unsupported_model")
