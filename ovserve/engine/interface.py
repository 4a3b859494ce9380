"""What a text generation engine is to the calculators that use it: one interface, whatever runs the model.

:class:`~ovserve.engine.client.EngineClient` implements it over an engine process (the server's); with
``in_process=True`` the same engine loop runs in a thread of the calling process instead (for fast tests and
tools: no process to start, but the model's steps then share the caller's GIL). Tests may implement it with a
fake that answers from a script.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

import numpy as np

from ovserve.engine.protocol import EngineInfo, SamplingParams


class TokenStream(Protocol):
    """One request in an engine: iterate it for its new tokens (``TokenDelta``s) until it finishes."""

    prompt_tokens: int

    def __aiter__(self) -> AsyncIterator[object]: ...

    def abort(self) -> None:
        """Stop generating for this request (no-op once it has finished)."""
        ...


class GenerationEngine(abc.ABC):
    """A text generation engine: started once, then takes requests from any number of connections."""

    @abc.abstractmethod
    async def start(self) -> EngineInfo:
        """Load the model; raise with the engine's own reason when it cannot. Called once, before any request."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Let the model go; requests still in flight end with an error. Called once, at shutdown or unload."""

    @abc.abstractmethod
    def submit(self, token_ids: Sequence[int] | np.ndarray, params: SamplingParams) -> TokenStream:
        """Queue a request (called on the event loop; must not block); iterate the result for its tokens."""

    def submit_vision(self, prompt: str, images: Sequence[tuple[bytes, int | None]], params: SamplingParams,
                      prompt_tokens: int) -> TokenStream:
        """Queue a vision model's request: the prompt as text with an image tag where each image goes, each image's
        encoded file with the longest side it may keep, and the prompt's length as the caller counted it."""
        raise NotImplementedError(f"{type(self).__name__} takes no images")

    @property
    @abc.abstractmethod
    def ready(self) -> bool:
        """Whether it takes requests now (false while loading or restarting)."""

    def metrics(self) -> dict[str, float]:
        """Gauges for ``/metrics`` (none by default)."""
        return {}
