"""Every class of graph error is caught at load, with file:line:column, node and tag in the message."""

import pytest

from ovserve.framework.errors import GraphConfigError
from ovserve.framework.validation import graph_from_text
from tests.framework.sample_calculators import sample_registry


def problems_of(text: str) -> list[str]:
    with pytest.raises(GraphConfigError) as caught:
        graph_from_text(text, sample_registry(), source="g.pbtxt")
    return [str(problem) for problem in caught.value.problems]


def test_a_valid_graph_builds_a_spec():
    spec = graph_from_text(
        """
        input_stream: "TEXT:text"
        output_stream: "LENGTH:length"
        node { name: "upper" calculator: "Upper" input_stream: "TEXT:text" output_stream: "UPPER:upper" }
        node { name: "length" calculator: "Length" input_stream: "TEXT:upper" output_stream: "LENGTH:length" }
        """,
        sample_registry(),
    )
    assert [node.name for node in spec.nodes] == ["upper", "length"]
    assert spec.inputs == {"TEXT": "text"} and spec.outputs == {"LENGTH": "length"}


def test_unknown_calculator_suggests_the_closest_name():
    (problem,) = problems_of('input_stream: "TEXT:t"\nnode {\n  calculator: "Uper"\n  input_stream: "TEXT:t"\n}')
    assert problem.startswith("g.pbtxt:3:3: node 'Uper': unknown calculator 'Uper'. Did you mean 'Upper'? If it is "
                              "one of yours, register the folder that defines it: --calculators DIR")


def test_a_tag_the_contract_does_not_have():
    problems = problems_of('input_stream: "TEXT:t"\nnode { name: "u" calculator: "Upper" input_stream: "TXT:t" }')
    assert problems[0].startswith("g.pbtxt:2:38: node 'u': calculator 'Upper' has no input_stream tag 'TXT'.")
    assert "Did you mean 'TEXT'?" in problems[0]


def test_a_required_tag_left_out():
    (problem,) = problems_of('node { name: "u" calculator: "Upper" output_stream: "UPPER:x" }')
    assert problem == "g.pbtxt:1:18: node 'u': required input_stream 'TEXT' of calculator 'Upper' is not connected"


def test_a_stream_nothing_produces():
    (problem,) = problems_of('input_stream: "TEXT:text"\nnode { name: "u" calculator: "Upper" input_stream: "TEXT:txt" }')
    assert problem.startswith("g.pbtxt:2:38: node 'u': input 'TEXT' reads stream 'txt', which nothing produces.")
    assert "Did you mean 'text'?" in problem


def test_a_stream_with_two_producers():
    (problem,) = problems_of(
        'input_stream: "TEXT:t"\n'
        'node { name: "a" calculator: "Upper" input_stream: "TEXT:t" output_stream: "UPPER:x" }\n'
        'node { name: "b" calculator: "Upper" input_stream: "TEXT:t" output_stream: "UPPER:x" }'
    )
    assert "stream 'x' has 2 producers: node 'a' output 'UPPER' (g.pbtxt:2:61)" in problem
    assert "node 'b' output 'UPPER' (g.pbtxt:3:61)" in problem


def test_a_graph_output_nothing_produces():
    (problem,) = problems_of('input_stream: "TEXT:t"\noutput_stream: "OUT:nowhere"')
    assert problem.startswith("g.pbtxt:2:1: graph output_stream 'OUT:nowhere' is produced by no node")


def test_a_cycle_without_back_edge_is_refused_and_with_one_is_accepted():
    cycle = """
        input_stream: "in"
        node { name: "a" calculator: "PassThroughCalculator" input_stream: "in" input_stream: "loop" output_stream: "x" }
        node { name: "b" calculator: "PassThroughCalculator" input_stream: "x" output_stream: "loop" }
    """
    (problem,) = problems_of(cycle)
    assert "cycle a -> b -> a has no back edge" in problem and "back_edge: true" in problem
    marked = cycle.replace('output_stream: "x" }', 'output_stream: "x" input_stream_info { tag_index: ":1" back_edge: true } }')
    spec = graph_from_text(marked, sample_registry())
    assert [i.back_edge for i in spec.nodes[0].inputs] == [False, True]


def test_connected_ports_whose_types_disagree_name_node_tag_and_both_types():
    (problem,) = problems_of(
        'input_stream: "TEXT:t"\n'
        'node { name: "len" calculator: "Length" input_stream: "TEXT:t" output_stream: "LENGTH:n" }\n'
        'node { name: "up" calculator: "Upper" input_stream: "TEXT:n" }'
    )
    assert problem == ("g.pbtxt:3:39: node 'up': input 'TEXT' takes str but stream 'n' carries int "
                       "from node 'len' output 'LENGTH'")


def test_side_packet_types_are_checked_too():
    (problem,) = problems_of(
        'input_stream: "NAME:n"\n'
        'node { name: "m" calculator: "GreetingModel" output_side_packet: "MODEL:model" }\n'
        'node { name: "d" calculator: "Double" input_stream: "NUMBER:n" }\n'
        'node { name: "g" calculator: "Greet" input_stream: "NAME:n" input_side_packet: "MODEL:other" }'
    )
    assert "node 'g': input_side_packet 'MODEL' reads side packet 'other', which no resource produces" in problem


def test_invalid_options_name_the_node_and_field():
    problems = problems_of(
        'input_stream: "TEXT:t"\n'
        'node { name: "r" calculator: "Repeat" input_stream: "TEXT:t"\n'
        '  node_options { [type.googleapis.com/test.RepeatOptions] { count: 0 } } }\n'
        'node { name: "s" calculator: "Repeat" input_stream: "TEXT:t"\n'
        '  node_options { [type.googleapis.com/test.RepeatOptions] { cuont: 2 } } }'
    )
    assert problems[0] == ("g.pbtxt:3:61: node 'r': field 'count' in options of Repeat: "
                           "Input should be greater than or equal to 1")
    assert problems[1].startswith("g.pbtxt:5:61: node 's': unknown field 'cuont' in options of Repeat.")
    assert "Did you mean 'count'?" in problems[1]


def test_options_given_to_a_calculator_without_options_are_refused():
    (problem,) = problems_of(
        'input_stream: "TEXT:t"\n'
        'node { name: "u" calculator: "Upper" input_stream: "TEXT:t"\n'
        '  node_options { [type.googleapis.com/x.Y] { anything: 1 } } }'
    )
    assert "node 'u': unknown field 'anything' in options of Upper" in problem


def test_a_resource_cannot_take_streams_and_a_calculator_cannot_make_side_packets():
    problems = problems_of(
        'input_stream: "TEXT:t"\n'
        'node { name: "m" calculator: "GreetingModel" input_stream: "TEXT:t" output_side_packet: "MODEL:m" }\n'
        'node { name: "u" calculator: "Upper" input_stream: "TEXT:t" output_side_packet: "MODEL:x" }'
    )
    assert any("node 'm'" in p and "is a resource" in p for p in problems)
    assert any("node 'u'" in p and "cannot produce side packets" in p for p in problems)


def test_unknown_input_stream_handler():
    (problem,) = problems_of(
        'input_stream: "TEXT:t"\n'
        'node { name: "u" calculator: "Upper" input_stream: "TEXT:t"\n'
        '  input_stream_handler { input_stream_handler: "ImmediateInputStreamHandlr" } }'
    )
    assert "node 'u': unknown input_stream_handler 'ImmediateInputStreamHandlr'" in problem
    assert "Did you mean 'ImmediateInputStreamHandler'?" in problem


def test_all_problems_are_reported_at_once():
    problems = problems_of(
        'input_stream: "TEXT:t"\n'
        'node { name: "a" calculator: "Nope" }\n'
        'node { name: "b" calculator: "Upper" input_stream: "TEXT:missing" }\n'
    )
    assert len(problems) == 2
