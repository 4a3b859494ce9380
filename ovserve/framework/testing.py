"""Run one calculator alone: push packets in, read packets out. For calculator tests::

    from ovserve.testing import CalculatorRunner

    async def test_uppercase():
        async with CalculatorRunner(Uppercase) as runner:
            await runner.send("TEXT", "hello")
            runner.close_inputs()
            assert await runner.collect("UPPER") == ["HELLO"]

or in one call: ``await run_calculator(Uppercase, {"TEXT": ["a", "b"]})`` → ``{"UPPER": ["A", "B"]}``.
"""

from __future__ import annotations

import asyncio
import inspect
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ovserve.framework.calculator import Calculator
from ovserve.framework.config import port_key
from ovserve.framework.graph import Graph
from ovserve.framework.graph_run import GraphRun
from ovserve.framework.ports import type_name
from ovserve.framework.spec import GRAPH_OUTPUT, GraphSpec, InputSpec, NodeSpec, OutputSpec


def _ports(declared: Mapping[str, Any], counts: Mapping[str, int]) -> list[str]:
    ports = []
    for tag, port in declared.items():
        count = counts.get(tag, 1) if port.multiple else 1
        ports.extend(port_key(tag, i) for i in range(count))
    return ports


def calculator_spec(
    calculator: type[Calculator],
    options: BaseModel | Mapping[str, Any] | None = None,
    *,
    side_inputs: Iterable[str] | None = None,
    port_counts: Mapping[str, int] | None = None,
    queue_size: int = 64,
    base_path: Path | None = None,
) -> GraphSpec:
    """A graph of exactly one node: each input port is a graph input, each output a graph output.

    ``port_counts`` gives how many indexes a ``multiple`` port gets (default one)."""
    counts = port_counts or {}
    contract = calculator.contract
    inputs = _ports(contract.inputs, counts)
    outputs = _ports(contract.outputs, counts)
    if options is None or isinstance(options, Mapping):
        options = calculator.Options.model_validate(dict(options or {}))
    sides = list(side_inputs) if side_inputs is not None else list(contract.side_inputs)
    node = NodeSpec(
        name=calculator.name,
        calculator=calculator,
        options=options,
        inputs=tuple(InputSpec(p, p, False) for p in inputs),
        outputs=tuple(OutputSpec(p, p, ((GRAPH_OUTPUT, i),)) for i, p in enumerate(outputs)),
        side_inputs={p: p for p in sides},
        sync_sets=(tuple(range(len(inputs))),) if inputs else (),
        location=None,
        base_path=base_path or Path.cwd(),
        process_is_async=inspect.iscoroutinefunction(calculator.process),
    )
    return GraphSpec(
        source=f"<{calculator.name}>",
        base_path=node.base_path,
        nodes=(node,),
        resources=(),
        inputs={p: p for p in inputs},
        input_consumers={p: ((0, i),) for i, p in enumerate(inputs)},
        outputs={p: p for p in outputs},
        input_side_packets={p: p for p in sides},
        queue_size=queue_size,
    )


class CalculatorRunner:
    """Runs one calculator in a one-node graph. Ports are addressed by tag (``"TEXT"``, ``"TEXT:1"``)."""

    def __init__(
        self,
        calculator: type[Calculator],
        options: BaseModel | Mapping[str, Any] | None = None,
        side_packets: Mapping[str, Any] | None = None,
        *,
        port_counts: Mapping[str, int] | None = None,
        queue_size: int = 64,
    ) -> None:
        self.calculator = calculator
        self.side_packets = dict(side_packets or {})
        self.spec = calculator_spec(calculator, options, side_inputs=self.side_packets,
                                    port_counts=port_counts, queue_size=queue_size)
        self._graph: Graph | None = None
        self._run: GraphRun | None = None

    @property
    def run(self) -> GraphRun:
        if self._run is None:
            raise RuntimeError("use `async with CalculatorRunner(...) as runner:` first")
        return self._run

    async def __aenter__(self) -> CalculatorRunner:
        self._graph = await Graph.start(self.spec, self.side_packets)
        self._run = self._graph.run()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._run is not None:
            await self._run.aclose()
        if self._graph is not None:
            await self._graph.stop()

    async def send(self, port: str, value: Any, timestamp: int | None = None) -> None:
        """Send ``value`` into the input ``port``; a value of another type than the port declares is refused here,
        naming the port and both types, as ``graph check`` names them for a graph."""
        declared = self.calculator.contract.inputs.get(port.split(":")[0])
        if (declared is not None and isinstance(declared.type, type) and not typing.get_args(declared.type)
                and not isinstance(value, declared.type)):
            raise TypeError(f"{self.calculator.name}: input '{port}' takes {declared.type_name}, not "
                            f"{type_name(type(value))} ({value!r:.80})")
        await self.run.send(port, value, timestamp)

    def close_inputs(self) -> None:
        self.run.close_inputs()

    async def collect(self, port: str) -> list[Any]:
        """Every value sent on an output port until the calculator finishes."""
        return await self.run.collect(port)

    async def wait(self) -> None:
        """Wait for the calculator to finish; raises what it raised (as ``CalculatorError``)."""
        await self.run.wait()


async def run_calculator(
    calculator: type[Calculator],
    inputs: Mapping[str, Iterable[Any]],
    options: BaseModel | Mapping[str, Any] | None = None,
    side_packets: Mapping[str, Any] | None = None,
) -> dict[str, list[Any]]:
    """Feed each input port its values (timestamps 0, 1, ...), all ports at once, closing each once its
    values are in (so that no port waits for another with more packets than a queue holds), and return
    every output."""
    async with CalculatorRunner(calculator, options, side_packets) as runner:
        outputs = list(runner.spec.outputs)
        readers = [asyncio.ensure_future(runner.collect(port)) for port in outputs]

        async def feed(port: str, values: Iterable[Any]) -> None:
            for value in values:
                await runner.send(port, value)
            runner.run.close_input(port)

        await asyncio.gather(*(feed(port, values) for port, values in inputs.items()))
        runner.close_inputs()
        results = await asyncio.gather(*readers)
        await runner.wait()
        return dict(zip(outputs, results, strict=True))
