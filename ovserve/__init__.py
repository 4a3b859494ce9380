"""ovserve: a model server for Intel hardware where every endpoint is a graph of calculators.

What calculator authors need is importable from here::

    from ovserve import Calculator, CalculatorContext, Input, Output, SideInput
"""

from ovserve.framework import (
    Calculator,
    CalculatorContext,
    CalculatorError,
    Graph,
    GraphConfigError,
    GraphRun,
    Input,
    NoOptions,
    Output,
    Packet,
    Resource,
    ResourceContext,
    SideInput,
    SideOutput,
)

__version__ = "0.1.0"

__all__ = [
    "Calculator",
    "CalculatorContext",
    "CalculatorError",
    "Graph",
    "GraphConfigError",
    "GraphRun",
    "Input",
    "NoOptions",
    "Output",
    "Packet",
    "Resource",
    "ResourceContext",
    "SideInput",
    "SideOutput",
    "__version__",
]
