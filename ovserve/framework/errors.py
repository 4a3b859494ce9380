"""Errors raised by the graph framework: at load (config and validation) and at run time."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ovserve.framework.textproto import SourceLocation


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a graph: what, where (file:line:column), and in which node / tag."""

    message: str
    location: SourceLocation | None = None
    node: str | None = None

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        node = f"node '{self.node}': " if self.node else ""
        return f"{where}{node}{self.message}"


class GraphError(Exception):
    """Base class of every error the framework raises."""


class GraphConfigError(GraphError):
    """A graph config cannot be loaded: syntax, schema, unknown calculators, wiring, types, options.

    ``problems`` lists every problem found (validation does not stop at the first one);
    ``str(error)`` prints one per line, each starting with ``file:line:column``.
    """

    def __init__(self, problems: Iterable[Problem] | Problem | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class CalculatorError(GraphError):
    """A calculator raised during a graph run; names the node and keeps the original as ``cause``."""

    def __init__(self, node: str, calculator: str, cause: BaseException) -> None:
        self.node = node
        self.calculator = calculator
        self.cause = cause
        super().__init__(f"node '{node}' ({calculator}) failed: {type(cause).__name__}: {cause}")


class RunCancelledError(GraphError):
    """Raised to a reader of a graph run that was cancelled from outside (for example, client gone)."""
