"""The messages between the HTTP process and an engine process: typed, and versioned by :data:`PROTOCOL_VERSION`.

Each message is a frozen dataclass, framed by :func:`~ovserve.engine.protocol.encode_frame`. The HTTP process
opens with :class:`Hello` (its protocol version and the engine's settings); an engine that speaks another version
answers :class:`LoadFailed` saying both versions, and exits. Then:

- HTTP process → engine: :class:`Submit`, :class:`Abort`, :class:`Stop`;
- engine → HTTP process: :class:`Ready` once the model is loaded (or :class:`LoadFailed`), then a :class:`Step`
  after each round of work that had news or changed how many requests run, and twice a second while it works.

The messages know no kind of model: the spec in the ``Hello``, a submitted job and a step's payloads are the kind's
own (:mod:`ovserve.engine.kinds`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ovserve.engine.kinds import EngineSpec, RequestOutput
from ovserve.engine.protocol import EngineInfo

#: The version of these messages; both ends must speak the same one. Raise it when a message changes.
PROTOCOL_VERSION = 3


# --- HTTP process → engine ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Hello:
    """The first message: the version the HTTP process speaks and what the engine is to load."""

    version: int
    spec: EngineSpec


@dataclass(frozen=True, slots=True)
class Submit:
    """A job for the engine: its id (the HTTP process's) and the job, of the engine's kind."""

    request_id: int
    job: Any


@dataclass(frozen=True, slots=True)
class Abort:
    """Stop working on a request: dropped if it waits, cancelled if it runs (where its pipeline can)."""

    request_id: int


@dataclass(frozen=True, slots=True)
class Stop:
    """Cancel every request, release them, and exit."""


# --- engine → HTTP process ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Ready:
    """The model is loaded; the engine serves from now on."""

    info: EngineInfo


@dataclass(frozen=True, slots=True)
class LoadFailed:
    """The engine cannot serve (its model does not load, or it speaks another protocol version): why, in one line."""

    reason: str


@dataclass(frozen=True, slots=True)
class Step:
    """What a round of the engine's work did, and how the engine stands after it."""

    outputs: list[RequestOutput]
    #: Requests the engine is working on (held and not aborted).
    running: int
    #: Rounds of work (engine steps) since the process started.
    steps: int
    #: For the requests the engine began on since the last report: how long each waited (seconds, an estimate).
    queued: list[float] = field(default_factory=list)
    #: Requests the engine holds, aborted ones it has not let go of yet included.
    held: int = 0
    #: Rounds since the process started that did nothing (no request scheduled).
    idle_steps: int = 0
    #: The kind's own gauges (the LLM's ``cache_usage``, percent).
    stats: dict[str, float] = field(default_factory=dict)


def version_mismatch(theirs: object) -> LoadFailed:
    """The answer to a :class:`Hello` of another version."""
    return LoadFailed(f"the engine speaks protocol version {PROTOCOL_VERSION} and the server {theirs}: the server "
                      f"and its engine come from different ovserve installs; reinstall one ovserve and restart")
