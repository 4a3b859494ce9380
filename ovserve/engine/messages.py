"""The messages between the HTTP process and an engine process: typed, and versioned by :data:`PROTOCOL_VERSION`.

Each message is a frozen dataclass, framed by :func:`~ovserve.engine.protocol.encode_frame`. The HTTP process
opens with :class:`Hello` (its protocol version and the engine's settings); an engine that speaks another version
answers :class:`LoadFailed` saying both versions, and exits. Then:

- HTTP process → engine: :class:`Add`, :class:`Abort`, :class:`Stop`;
- engine → HTTP process: :class:`Ready` once the model is loaded (or :class:`LoadFailed`), then a :class:`Step`
  after each engine step that produced tokens or changed how many requests run, and twice a second while it works.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ovserve.engine.protocol import EngineInfo, SamplingParams
from ovserve.engine.settings import EngineSettings

#: The version of these messages; both ends must speak the same one. Raise it when a message changes.
PROTOCOL_VERSION = 2


# --- HTTP process → engine ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Hello:
    """The first message: the version the HTTP process speaks and what the engine is to load."""

    version: int
    settings: EngineSettings


@dataclass(frozen=True, slots=True)
class Add:
    """A request to generate for: its id (the HTTP process's), its prompt as int64 token ids' bytes, its settings."""

    request_id: int
    token_ids: bytes
    params: SamplingParams


@dataclass(frozen=True, slots=True)
class Abort:
    """Stop generating for a request (its handle is let go once the pipeline has released it)."""

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


#: One request's news in a step: (request id, its new token ids, ``None`` while it runs or how it finished:
#: ``stop``, ``length``, ``abort`` or ``error: <message>``).
RequestOutput = tuple[int, tuple[int, ...] | list[int], str | None]


@dataclass(frozen=True, slots=True)
class Step:
    """What an engine step did, and how the engine stands after it."""

    outputs: list[RequestOutput]
    #: Requests the engine is working on (held and not aborted).
    running: int
    #: KV cache in use, percent.
    cache_usage: float
    #: Engine steps since the process started.
    steps: int
    #: The requests that asked for log-probabilities, to their new tokens' log-probabilities.
    logprobs: dict[int, list[float]] = field(default_factory=dict)
    #: For the requests the engine began on in this step: how long each waited for it (seconds, an estimate).
    queued: list[float] = field(default_factory=list)
    #: Request handles the engine holds, aborted ones it has not let go of yet included.
    held: int = 0
    #: Steps since the process started that scheduled no request.
    idle_steps: int = 0


def version_mismatch(theirs: object) -> LoadFailed:
    """The answer to a :class:`Hello` of another version."""
    return LoadFailed(f"the engine speaks protocol version {PROTOCOL_VERSION} and the server {theirs}: the server "
                      f"and its engine come from different ovserve installs; reinstall one ovserve and restart")
