"""A one-call kind of model for testing the engine boundary: its "pipeline" echoes text, word by word.

Importable by an engine process (``tests.engine.echo_kind``), so that the same kind runs in process and behind one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ovserve.engine.kinds import CallCore, CallJob, CallSignal, EngineCore, EngineSpec


class EchoPipeline:
    """Says each word of a text after ``delay`` seconds, through a callback that can stop it (as Whisper's can)."""

    def generate(self, text: str, delay: float, streamer: Any) -> str:
        said = []
        for word in text.split():
            time.sleep(delay)
            said.append(word)
            if streamer(word):
                break
        return " ".join(said)


@dataclass(frozen=True)
class EchoJob(CallJob):
    text: str
    delay: float = 0.0
    fail: bool = False
    #: Seconds to hang first, saying nothing (as a stuck pipeline call does).
    hang: float = 0.0
    #: Emit no partial results (the callback still asks whether to stop, as a unary Whisper call's does).
    quiet: bool = False

    def run(self, pipeline: EchoPipeline, emit: Any, cancelled: CallSignal) -> Any:
        time.sleep(self.hang)
        if self.fail:
            raise ValueError(f"cannot echo {self.text!r}")

        def streamer(word: str) -> bool:
            if not self.quiet:
                emit(word)
            return cancelled.is_set()

        return pipeline.generate(self.text, self.delay, streamer)


@dataclass(frozen=True)
class EchoSpec(EngineSpec):
    concurrency: int = 1
    limit: int | None = 4
    fail_to_load: bool = False

    one_call = True

    @property
    def name(self) -> str:
        return "echo"

    @property
    def max_in_flight(self) -> int | None:
        return self.limit

    def load(self) -> EngineCore:
        if self.fail_to_load:
            raise FileNotFoundError("no echo model here")
        return CallCore(EchoPipeline(), self.concurrency)
