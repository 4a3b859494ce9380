"""The graph framework: calculators, ports, packets, graph configs, validation, registry, runs.

It imports neither OpenVINO nor HTTP code, so it can be used and tested on its own.
"""

from ovserve.framework.calculator import Calculator, CalculatorContext, NoOptions, Resource, ResourceContext
from ovserve.framework.config import GraphConfig, NodeConfig, load_graph_config, parse_graph_config
from ovserve.framework.errors import CalculatorError, GraphConfigError, GraphError, Problem, RunCancelledError
from ovserve.framework.graph import Graph, ResourceError
from ovserve.framework.graph_run import GraphRun
from ovserve.framework.packet import Packet
from ovserve.framework.ports import Input, Output, SideInput, SideOutput
from ovserve.framework.registry import Registry, build_registry
from ovserve.framework.spec import GraphSpec
from ovserve.framework.validation import build_spec, graph_from_text, load_graph

__all__ = [
    "Calculator",
    "CalculatorContext",
    "CalculatorError",
    "Graph",
    "GraphConfig",
    "GraphConfigError",
    "GraphError",
    "GraphRun",
    "GraphSpec",
    "Input",
    "NoOptions",
    "NodeConfig",
    "Output",
    "Packet",
    "Problem",
    "Registry",
    "Resource",
    "ResourceContext",
    "ResourceError",
    "RunCancelledError",
    "SideInput",
    "SideOutput",
    "build_registry",
    "build_spec",
    "graph_from_text",
    "load_graph",
    "load_graph_config",
    "parse_graph_config",
]
