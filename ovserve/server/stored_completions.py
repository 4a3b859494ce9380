"""OpenAI's stored chat completions over HTTP: keeping a ``store: true`` completion (unary or streamed) and the
routes that list, get, update and delete them, as plain handlers over :class:`CompletionStore`.

- ``GET /v3/chat/completions`` (``after``, ``limit``, ``order``, ``model``, ``metadata[KEY]=VALUE``)
- ``GET /v3/chat/completions/{id}`` and ``GET /v3/chat/completions/{id}/messages``
- ``POST /v3/chat/completions/{id}`` with ``{"metadata": {...}}``
- ``DELETE /v3/chat/completions/{id}``
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ovserve.calculators.llm.schema import Metadata
from ovserve.errors import RequestError
from ovserve.request_body import parse_body
from ovserve.server.completion_store import CompletionStore, owner_of
from ovserve.server.responses import error_response

log = logging.getLogger("ovserve.server")
_METADATA_PARAM = re.compile(r"^metadata\[(.+)\]$")


def request_owner(request: Request) -> str:
    """The owner of what this request stores or reads: its API key's hash (``""`` without one)."""
    authorization = request.headers.get("authorization", "")
    return owner_of(authorization[7:].strip() if authorization.lower().startswith("bearer ") else None)


class StoreCapture:
    """Keeps a ``store: true`` chat completion, unary or streamed: the ``chat.completion`` object the graph's last
    payload carries, with the request's messages."""

    def __init__(self, store: CompletionStore, owner: str, body: dict[str, Any]) -> None:
        self.store = store
        self.owner = owner
        self.body = body

    def finish(self, answer: Mapping[str, Any]) -> None:
        if answer.get("object") != "chat.completion":
            return
        completion = dict(answer)
        messages = [{**_stored_message(message), "id": f"{completion['id']}-{i}"}
                    for i, message in enumerate(self.body.get("messages", []))]
        self.store.put(self.owner, completion, messages, self.body.get("metadata"))


def _stored_message(message: Any) -> dict[str, Any]:
    """A request message as OpenAI lists it back: text ``content``, and its parts in ``content_parts``."""
    if not isinstance(message, dict):
        return {"role": "user", "content": str(message)}
    content = message.get("content")
    if isinstance(content, list):
        text = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return {**message, "content": text, "content_parts": content}
    return {**message, "content_parts": None}


class StoredCompletionRoutes:
    """The stored-completion endpoints; with no store (``--store-path none``) each answers 404 saying so."""

    def __init__(self, store: CompletionStore | None) -> None:
        self.store = store

    def _store(self) -> CompletionStore:
        if self.store is None:
            raise RequestError("this server keeps no completions (started with --store-path none)", status=404,
                               code="store_disabled")
        return self.store

    @staticmethod
    def _missing(completion_id: str) -> RequestError:
        return RequestError(f"No chat completion found with id '{completion_id}'", status=404, param="completion_id",
                            code="not_found")

    async def list(self, request: Request) -> Response:
        try:
            params = request.query_params
            limit, order = _limit(params.get("limit")), _order(params.get("order"))
            metadata = _metadata({m.group(1): value for key, value in params.multi_items()
                                  if (m := _METADATA_PARAM.match(key)) is not None})
            store = self._store()
            try:
                page = await store.run(store.list, request_owner(request), after=params.get("after"), limit=limit,
                                       order=order, model=params.get("model"), metadata=metadata)
            except KeyError:
                raise self._missing(str(params.get("after"))) from None
        except RequestError as error:
            return error_response(error)
        return JSONResponse(_page(page.items, page.has_more))

    async def get(self, request: Request) -> Response:
        completion_id = request.path_params["completion_id"]
        try:
            completion = await self._store().run(self._store().get, request_owner(request), completion_id)
            if completion is None:
                raise self._missing(completion_id)
        except RequestError as error:
            return error_response(error)
        return JSONResponse(completion)

    async def messages(self, request: Request) -> Response:
        completion_id = request.path_params["completion_id"]
        try:
            messages = await self._store().run(self._store().messages, request_owner(request), completion_id)
            if messages is None:
                raise self._missing(completion_id)
            params = request.query_params
            limit, order = _limit(params.get("limit")), _order(params.get("order"))
        except RequestError as error:
            return error_response(error)
        if order == "desc":
            messages.reverse()
        after = params.get("after")
        start = next((i + 1 for i, m in enumerate(messages) if m["id"] == after), 0) if after else 0
        chosen = messages[start:start + limit]
        return JSONResponse(_page(chosen, start + limit < len(messages)))

    async def update(self, request: Request) -> Response:
        completion_id = request.path_params["completion_id"]
        try:
            body = json.loads(await request.body() or b"{}")
            metadata = body.get("metadata") if isinstance(body, dict) else None
            if not isinstance(metadata, dict):
                raise RequestError("give 'metadata': an object of string keys and string values", param="metadata",
                                   code="invalid_value")
            metadata = _metadata(metadata)
            completion = await self._store().run(self._store().update_metadata, request_owner(request), completion_id,
                                                 metadata)
            if completion is None:
                raise self._missing(completion_id)
        except ValueError:  # not JSON, or not UTF-8
            return error_response(RequestError("the body is not valid JSON (in UTF-8)", code="invalid_json"))
        except RequestError as error:
            return error_response(error)
        return JSONResponse(completion)

    async def delete(self, request: Request) -> Response:
        completion_id = request.path_params["completion_id"]
        try:
            if not await self._store().run(self._store().delete, request_owner(request), completion_id):
                raise self._missing(completion_id)
        except RequestError as error:
            return error_response(error)
        return JSONResponse({"id": completion_id, "object": "chat.completion.deleted", "deleted": True})


def _metadata(value: dict[str, Any]) -> dict[str, str]:
    """``metadata`` within OpenAI's limits (16 pairs, keys of up to 64 characters, values of up to 512), or a 400
    naming the field."""
    return parse_body(_MetadataField, {"metadata": value}).metadata or {}


class _MetadataField(BaseModel):
    metadata: Metadata | None = None


def _page(items: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None, "has_more": has_more}


def _limit(value: str | None) -> int:
    try:
        limit = int(value) if value is not None else 20
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise RequestError(f"'limit' must be a whole number from 1 to 100, not {value!r}", param="limit",
                           code="invalid_value")
    return limit


def _order(value: str | None) -> str:
    if value not in (None, "asc", "desc"):
        raise RequestError(f"'order' must be 'asc' or 'desc', not {value!r}", param="order", code="invalid_value")
    return value or "asc"
