"""The Responses API's state, beyond OVMS (which is stateless): ``store`` (true by default, as in OpenAI's API)
keeps a response; ``previous_response_id`` continues from one; and ``GET /v3/responses/{id}``,
``DELETE /v3/responses/{id}`` and ``GET /v3/responses/{id}/input_items`` are plain handlers over the store.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ovserve.errors import RequestError
from ovserve.server.completion_store import CompletionStore
from ovserve.server.responses import error_response
from ovserve.server.stored_completions import request_owner


class StoreField(BaseModel):
    """A completion request's ``store`` and ``stream``, checked before the server decides whether and how to keep
    the answer (the graph checks the whole request later, after that decision)."""

    model_config = ConfigDict(extra="ignore")

    store: bool | None = None
    stream: bool | None = None


class ConversationFields(StoreField):
    """The fields of a Responses request that the store reads before the graph checks the request."""

    input: str | list[dict[str, Any]]
    previous_response_id: str | None = None


def _as_items(value: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``input`` as items, each with an id (a string is one user message)."""
    items = [{"type": "message", "role": "user", "content": value}] if isinstance(value, str) else list(value)
    return [{"id": f"msg_{uuid.uuid4().hex}", **item} if "id" not in item else item for item in items]


def _input_of_output(item: dict[str, Any]) -> dict[str, Any] | None:
    """A response's output item as the input item that carries it into the next turn."""
    if item.get("type") == "message":
        text = "".join(part.get("text", "") for part in item.get("content", []))
        return {"type": "message", "role": "assistant", "content": text}
    if item.get("type") == "function_call":
        return {key: item[key] for key in ("type", "call_id", "name", "arguments")}
    return None  # reasoning is not carried over


async def continue_conversation(store: CompletionStore | None, owner: str, data: dict[str, Any],
                                fields: ConversationFields) -> list[dict[str, Any]]:
    """The request's own input items; ``data["input"]`` becomes the whole conversation when it continues from
    ``previous_response_id`` (each response of the chain that led there: its input, then its output; then this
    input). Reads the store on its thread."""
    own = _as_items(fields.input)
    previous_id = fields.previous_response_id
    if previous_id is None:
        data["input"] = own
        return own
    chain = await store.run(store.chain, owner, previous_id) if store is not None else None
    if chain is None:
        raise RequestError(f"Previous response with id '{previous_id}' not found", status=404,
                           param="previous_response_id", code="previous_response_not_found")
    conversation: list[dict[str, Any]] = []
    for response, items in chain:
        conversation += items
        conversation += [item for item in map(_input_of_output, response.get("output", [])) if item is not None]
    data["input"] = [*conversation, *own]
    return own


class ResponseCapture:
    """Keeps a response with ``store`` (the default) once it finished: the ``response`` object the graph's last
    payload carries (what ``response.completed`` or ``.incomplete`` carries when it streamed)."""

    def __init__(self, store: CompletionStore, owner: str, data: dict[str, Any], own: list[dict[str, Any]],
                 previous_id: str | None) -> None:
        self.store = store
        self.owner, self.data, self.own, self.previous_id = owner, data, own, previous_id

    def finish(self, answer: Mapping[str, Any]) -> None:
        if answer.get("object") != "response":
            return
        self.store.put_response(self.owner, dict(answer), self.own, self.previous_id)


class StoredResponseRoutes:
    """``GET`` and ``DELETE /v3/responses/{id}``, ``GET /v3/responses/{id}/input_items``."""

    def __init__(self, store: CompletionStore | None) -> None:
        self.store = store

    async def _find(self, request: Request) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        response_id = request.path_params["response_id"]
        store = self.store
        found = await store.run(store.get_response, request_owner(request), response_id) if store else None
        if found is None:
            raise RequestError(f"Response with id '{response_id}' not found", status=404, param="response_id",
                               code="not_found")
        return found

    async def get(self, request: Request) -> Response:
        try:
            return JSONResponse((await self._find(request))[0])
        except RequestError as error:
            return error_response(error)

    async def input_items(self, request: Request) -> Response:
        try:
            items = (await self._find(request))[1]
        except RequestError as error:
            return error_response(error)
        listed = [_listed_item(item) for item in items]
        if request.query_params.get("order", "desc") == "desc":  # OpenAI lists them newest first by default
            listed.reverse()
        return JSONResponse({"object": "list", "data": listed, "first_id": listed[0]["id"] if listed else None,
                             "last_id": listed[-1]["id"] if listed else None, "has_more": False})

    async def delete(self, request: Request) -> Response:
        try:
            await self._find(request)
        except RequestError as error:
            return error_response(error)
        assert self.store is not None
        await self.store.run(self.store.delete_response, request_owner(request), request.path_params["response_id"])
        return JSONResponse({"id": request.path_params["response_id"], "object": "response", "deleted": True})


def _listed_item(item: dict[str, Any]) -> dict[str, Any]:
    """An input item as OpenAI lists it: a message's text content as ``input_text`` parts."""
    if item.get("type", "message") == "message" and isinstance(item.get("content"), str):
        return {"type": "message", "status": "completed", **item,
                "content": [{"type": "input_text", "text": item["content"]}]}
    return item
