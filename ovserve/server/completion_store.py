"""Stored chat completions and Responses API responses (``store: true``), kept in SQLite so that they outlive a
restart.

The store lives at ``$OVSERVE_HOME/store.sqlite3`` (``--store-path``). Each item belongs to the API key that
stored it (by its SHA-256; ``""`` when the server has no keys): a key sees, changes and deletes only its own. It
is bounded at every write, for chat completions and responses each: items older than ``max_age`` seconds are
dropped, then a key's oldest beyond ``max_items`` (so one key's writes never evict another's), then the oldest of
all beyond ``max_total`` (so that many keys cannot grow the file without end). Each bound is found by an index.

A stored response keeps its own input items and its output, and the id of the response it continued; the
conversation that led to it is put together from that chain when it is read, so a chain's storage grows with its
length, not with its square.

The methods are blocking; the server calls them through :meth:`CompletionStore.run`, on the store's own thread,
one at a time in the order they were asked, so that the event loop never waits for the disk and a write is
seen by every read asked after it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

T = TypeVar("T")

#: Defaults: at most this many completions per key and of all keys, none older than this many seconds (30 days).
DEFAULT_MAX_ITEMS = 10_000
DEFAULT_MAX_TOTAL = 100_000
DEFAULT_MAX_AGE = 30 * 24 * 3600
#: The longest chain of responses a conversation is put together from (each continued the one before).
MAX_CHAIN = 10_000

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
create index if not exists chat_completions_created on chat_completions (created);
create table if not exists responses (
    seq integer primary key autoincrement,
    id text unique not null,
    owner text not null,
    created integer not null,
    response text not null,
    input_items text not null,
    conversation text not null
);
create index if not exists responses_owner on responses (owner, seq);
create index if not exists responses_created on responses (created);
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

    def __init__(self, path: Path, max_items: int = DEFAULT_MAX_ITEMS, max_age: float = DEFAULT_MAX_AGE,
                 max_total: int = DEFAULT_MAX_TOTAL) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_items = max_items
        self.max_total = max(max_total, max_items)
        self.max_age = max_age
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("pragma journal_mode=wal")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("pragma table_info(responses)")}
        if "previous_id" not in columns:  # files written before chains were kept as links
            try:
                self._db.execute("alter table responses add column previous_id text")
            except sqlite3.OperationalError:  # another process added it meanwhile
                if "previous_id" not in {row[1] for row in self._db.execute("pragma table_info(responses)")}:
                    raise
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ovserve-store")

    def run(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> asyncio.Future[T]:
        """Call ``method`` (one of this store's) on the store's thread, after everything asked before it; await
        the result. Call it from the event loop."""
        return asyncio.get_running_loop().run_in_executor(self._thread, lambda: method(*args, **kwargs))

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
            self._prune("chat_completions", owner, now)

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
        for key, value in (metadata or {}).items():  # bound as values: any key, no JSON path to escape
            where.append("exists (select 1 from json_each(chat_completions.metadata) where key = ? and value = ?)")
            args += [key, value]
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
                     previous_id: str | None) -> None:
        """Keep a Responses API ``response`` with the request's own input items and the id of the response it
        continued (``previous_response_id``), from which the conversation before it is put together."""
        now = int(time.time())
        with self._lock:
            self._db.execute(
                "insert or replace into responses (id, owner, created, response, input_items, conversation, "
                "previous_id) values (?, ?, ?, ?, ?, '[]', ?)",
                (response["id"], owner, int(response.get("created_at", now)), json.dumps(response),
                 json.dumps(input_items), previous_id))
            self._prune("responses", owner, now)

    def get_response(self, owner: str, response_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """(the response, its input items), or None."""
        with self._lock:
            row = self._db.execute("select response, input_items from responses where owner = ? and id = ?",
                                   (owner, response_id)).fetchone()
        return None if row is None else (json.loads(row[0]), json.loads(row[1]))

    def chain(self, owner: str, response_id: str) -> list[tuple[dict[str, Any], list[dict[str, Any]]]] | None:
        """The responses that led to ``response_id``, first first, it last: each (response, the input items it
        added); None if there is no such response. A chain whose start was dropped (by age or count, or
        deleted) starts where it is still kept."""
        links: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
        seen: set[str] = set()
        current: str | None = response_id
        with self._lock:
            while current is not None and current not in seen and len(links) < MAX_CHAIN:
                seen.add(current)
                row = self._db.execute("select response, input_items, conversation, previous_id from responses "
                                       "where owner = ? and id = ?", (owner, current)).fetchone()
                if row is None:
                    break
                # a file written before chains were links holds the whole input that led to it, its own included
                before = json.loads(row[2])
                links.append((json.loads(row[0]), before or json.loads(row[1])))
                current = None if before else row[3]
        return links[::-1] if links else None

    def delete_response(self, owner: str, response_id: str) -> bool:
        with self._lock:
            return self._db.execute("delete from responses where owner = ? and id = ?",
                                    (owner, response_id)).rowcount > 0

    def _prune(self, table: str, owner: str, now: int) -> None:
        """The bounds, each found by an index: nothing older than ``max_age``, then the owner's newest
        ``max_items``, then the newest ``max_total`` of all."""
        self._db.execute(f"delete from {table} where created < ?", (now - self.max_age,))
        cutoff = self._db.execute(f"select seq from {table} where owner = ? order by seq desc limit 1 offset ?",
                                  (owner, self.max_items)).fetchone()
        if cutoff is not None:
            self._db.execute(f"delete from {table} where owner = ? and seq <= ?", (owner, cutoff[0]))
        cutoff = self._db.execute(f"select seq from {table} order by seq desc limit 1 offset ?",
                                  (self.max_total,)).fetchone()
        if cutoff is not None:
            self._db.execute(f"delete from {table} where seq <= ?", (cutoff[0],))

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        with self._lock:
            self._db.close()

    def _row(self, owner: str, completion_id: str, columns: str) -> tuple[Any, ...] | None:
        with self._lock:
            return self._db.execute(f"select {columns} from chat_completions where owner = ? and id = ?",
                                    (owner, completion_id)).fetchone()
