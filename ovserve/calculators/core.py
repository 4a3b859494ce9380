"""Generic building blocks."""

from __future__ import annotations

from typing import Any

from ovserve import Calculator, CalculatorContext, Input, Output


class PassThroughCalculator(Calculator):
    """Forwards every packet from input N to output N unchanged (MediaPipe's PassThroughCalculator)."""

    IN = Input(Any, tag="", optional=True, multiple=True, doc="any number of untagged streams")
    OUT = Output(Any, tag="", multiple=True, doc="the same packets, index for index")
    input_stream_handler = "ImmediateInputStreamHandler"

    def process(self, ctx: CalculatorContext) -> None:
        for port, packet in ctx.inputs.items():
            ctx.send(port, packet.value, packet.timestamp)
