"""Stored chat completions and Responses API responses (``store: true``), kept in SQLite so that they outlive a
restart.

The store lives at ``$OVSERVE_HOME/store.sqlite3`` (``--store-path``) and is bounded two ways, checked at
every write: items older than ``max_age`` seconds are dropped, then the oldest beyond ``max_items`` (for chat
completions and responses each). Each item belongs to the API key that stored it (by its SHA-256; ``""``
when the server has no keys): a key sees, changes and deletes only its own.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

#: Defaults: at most this many completions, none older than this many seconds (30 days).
DEFAULT_MAX_ITEMS = 10_000
DEFAULT_MAX_AGE = 30 * 24 * 3600

_SCHEMA = """
create table if not exists chat_completions (
    seq integer primary key autoincrement,
    id text unique not null,
    owner text not null,
    model text not null,
    created integer not null,
    metadata text not null,
    messages text not null,
    completion text not null
);
create index if not exists chat_completions_owner on chat_completions (owner, seq);
create table if not exists responses (
    seq integer primary key autoincrement,
    id text unique not null,
    owner text not null,
    created integer not null,
    response text not null,
    input_items text not null,
    conversation text not null
);
"""


def owner_of(api_key: str | None) -> str:
    """Who stored a completion: the SHA-256 of the key used (the key itself is never written)."""
    return hashlib.sha256(api_key.encode()).hexdigest() if api_key else ""


@dataclass(frozen=True)
class Page:
    """One page of a listing: the items, and whether more follow."""

    items: list[dict[str, Any]]
    has_more: bool


class CompletionStore:
    """Chat completions by id, per owner, in one SQLite file; safe to call from any thread."""

    def __init__(self, path: Path, max_items: int = DEFAULT_MAX_ITEMS, max_age: float = DEFAULT_MAX_AGE) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_items = max_items
        self.max_age = max_age
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("pragma journal_mode=wal")
        self._db.executescript(_SCHEMA)

    def put(self, owner: str, completion: dict[str, Any], messages: list[dict[str, Any]],
            metadata: dict[str, str] | None) -> None:
        """Keep ``completion`` (a ``chat.completion`` object) with the request's ``messages``."""
        now = int(time.time())
        with self._lock:
            self._db.execute(
                "insert or replace into chat_completions (id, owner, model, created, metadata, messages, completion)"
                " values (?, ?, ?, ?, ?, ?, ?)",
                (completion["id"], owner, completion.get("model", ""), int(completion.get("created", now)),
                 json.dumps(metadata or {}), json.dumps(messages), json.dumps(completion)))
            self._prune("chat_completions", now)

    def get(self, owner: str, completion_id: str) -> dict[str, Any] | None:
        """The stored ``chat.completion`` with its ``metadata``, or None."""
        row = self._row(owner, completion_id, "completion, metadata")
        return None if row is None else {**json.loads(row[0]), "metadata": json.loads(row[1])}

    def messages(self, owner: str, completion_id: str) -> list[dict[str, Any]] | None:
        row = self._row(owner, completion_id, "messages")
        return None if row is None else json.loads(row[0])

    def list(self, owner: str, *, after: str | None = None, limit: int = 20,
             order: Literal["asc", "desc"] = "asc", model: str | None = None,
             metadata: dict[str, str] | None = None) -> Page:
        """A page of the owner's completions, oldest first (``asc``) or newest first, after the id ``after``."""
        where, args = ["owner = ?"], [owner]
        if model:
            where.append("model = ?")
            args.append(model)
        for key, value in (metadata or {}).items():
            where.append("json_extract(metadata, ?) = ?")
            args += [f'$."{key}"', value]
        if after is not None:
            row = self._row(owner, after, "seq")
            if row is None:
                raise KeyError(after)
            where.append("seq > ?" if order == "asc" else "seq < ?")
            args.append(row[0])
        with self._lock:
            rows = self._db.execute(
                f"select completion, metadata from chat_completions where {' and '.join(where)} "
                f"order by seq {'asc' if order == 'asc' else 'desc'} limit ?", (*args, limit + 1)).fetchall()
        items = [{**json.loads(completion), "metadata": json.loads(meta)} for completion, meta in rows[:limit]]
        return Page(items, len(rows) > limit)

    def update_metadata(self, owner: str, completion_id: str, metadata: dict[str, str]) -> dict[str, Any] | None:
        with self._lock:
            changed = self._db.execute("update chat_completions set metadata = ? where owner = ? and id = ?",
                                       (json.dumps(metadata), owner, completion_id)).rowcount
        return self.get(owner, completion_id) if changed else None

    def delete(self, owner: str, completion_id: str) -> bool:
        with self._lock:
            return self._db.execute("delete from chat_completions where owner = ? and id = ?",
                                    (owner, completion_id)).rowcount > 0

    def put_response(self, owner: str, response: dict[str, Any], input_items: list[dict[str, Any]],
                     conversation: list[dict[str, Any]]) -> None:
        """Keep a Responses API ``response`` with the request's own input items and the whole conversation
        that led to it (what ``previous_response_id`` continues)."""
        now = int(time.time())
        with self._lock:
            self._db.execute(
                "insert or replace into responses (id, owner, created, response, input_items, conversation) "
                "values (?, ?, ?, ?, ?, ?)", (response["id"], owner, int(response.get("created_at", now)),
                                              json.dumps(response), json.dumps(input_items), json.dumps(conversation)))
            self._prune("responses", now)

    def get_response(self, owner: str, response_id: str) -> tuple[dict[str, Any], list[dict[str, Any]],
                                                                    list[dict[str, Any]]] | None:
        """(the response, its input items, the conversation before it), or None."""
        with self._lock:
            row = self._db.execute("select response, input_items, conversation from responses where owner = ? and "
                                   "id = ?", (owner, response_id)).fetchone()
        return None if row is None else (json.loads(row[0]), json.loads(row[1]), json.loads(row[2]))

    def delete_response(self, owner: str, response_id: str) -> bool:
        with self._lock:
            return self._db.execute("delete from responses where owner = ? and id = ?",
                                    (owner, response_id)).rowcount > 0

    def _prune(self, table: str, now: int) -> None:
        """The bounds: nothing older than ``max_age``, then at most ``max_items`` (the newest)."""
        self._db.execute(f"delete from {table} where created < ?", (now - self.max_age,))
        self._db.execute(f"delete from {table} where seq not in (select seq from {table} order by seq desc limit ?)",
                         (self.max_items,))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _row(self, owner: str, completion_id: str, columns: str) -> tuple[Any, ...] | None:
        with self._lock:
            return self._db.execute(f"select {columns} from chat_completions where owner = ? and id = ?",
                                    (owner, completion_id)).fetchone()
