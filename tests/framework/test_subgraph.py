"""Subgraphs: a registered graph used as a node is expanded at load, with its options and back edges."""

import pytest

from ovserve.framework.config import parse_graph_config
from ovserve.framework.errors import GraphConfigError
from ovserve.framework.runtime import Graph
from ovserve.framework.validation import graph_from_text
from tests.framework.sample_calculators import sample_registry

SHOUT = """
type: "Shout"
input_stream: "TEXT:text"
output_stream: "SHOUTED:shouted"
output_stream: "LOOPBACK:loop_out"
input_stream: "LOOPBACK:loop_in"
node { name: "upper" calculator: "Upper" input_stream: "TEXT:text" output_stream: "UPPER:upper" }
node { name: "repeat" calculator: "Repeat" input_stream: "TEXT:upper" output_stream: "COPIES:shouted"
       node_options { [type.googleapis.com/test.RepeatOptions] { count: 1 } } }
node { name: "loop" calculator: "PassThroughCalculator" input_stream: "loop_in" output_stream: "loop_out" }
"""


def registry_with_shout():
    registry = sample_registry()
    registry.add(parse_graph_config(SHOUT, "shout.pbtxt"), "test")
    return registry


OUTER = """
input_stream: "TEXT:in"
output_stream: "OUT:out"
node {
  name: "shout"
  calculator: "Shout"
  input_stream: "TEXT:in"
  output_stream: "SHOUTED:out"
  node_options { [type.googleapis.com/test.RepeatOptions] { count: 2 } }
}
"""


async def test_a_subgraph_node_expands_into_its_nodes_and_runs():
    spec = graph_from_text(OUTER, registry_with_shout())
    assert [node.name for node in spec.nodes] == ["shout/upper", "shout/repeat", "shout/loop"]
    graph = await Graph.start(spec)
    async with graph.run() as run:
        await run.send("TEXT", "hey")
        run.close_inputs()
        assert await run.collect("OUT") == ["HEY", "HEY"], "count: 2 flowed from the node's options"


def test_options_of_the_subgraph_node_override_inner_defaults_of_the_same_type():
    spec = graph_from_text(OUTER, registry_with_shout())
    repeat = next(node for node in spec.nodes if node.name == "shout/repeat")
    assert repeat.options.count == 2


def test_a_back_edge_on_the_subgraph_node_marks_the_inner_input():
    spec = graph_from_text(
        """
        input_stream: "TEXT:in"
        output_stream: "OUT:out"
        node {
          name: "shout"
          calculator: "Shout"
          input_stream: "TEXT:in"
          input_stream: "LOOPBACK:loop"
          output_stream: "SHOUTED:out"
          output_stream: "LOOPBACK:loop"
          input_stream_info { tag_index: "LOOPBACK:0" back_edge: true }
        }
        """,
        registry_with_shout(),
    )
    loop = next(node for node in spec.nodes if node.name == "shout/loop")
    assert [(i.stream, i.back_edge) for i in loop.inputs] == [("loop", True)]
    assert [o.stream for o in loop.outputs] == ["loop"]


def test_a_port_the_subgraph_does_not_declare_is_an_error():
    with pytest.raises(GraphConfigError, match=r"subgraph 'Shout' has no input_stream 'TXT'\. Did you mean 'TEXT'"):
        graph_from_text('input_stream: "TEXT:in"\nnode { calculator: "Shout" input_stream: "TXT:in" }',
                        registry_with_shout())


def test_options_no_inner_node_uses_are_an_error():
    with pytest.raises(GraphConfigError, match=r"options of type 'other\.Options' are not used by any node"):
        graph_from_text(
            'input_stream: "TEXT:in"\nnode { calculator: "Shout" input_stream: "TEXT:in" '
            "node_options { [type.googleapis.com/other.Options] { x: 1 } } }",
            registry_with_shout(),
        )
