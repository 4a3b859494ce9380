"""Graph files as OVMS and MediaPipe users write them parse with nothing lost."""

from pathlib import Path

import pytest

from ovserve.framework.config import load_graph_config, parse_graph_config, parse_stream_refs
from ovserve.framework.errors import GraphConfigError

FIXTURES = Path(__file__).parent.parent / "fixtures" / "graphs"


def test_the_ovms_continuous_batching_demo_graph_parses_with_nothing_lost():
    loaded = load_graph_config(FIXTURES / "ovms_continuous_batching.pbtxt")
    graph = loaded.config
    assert graph.input_stream == ["HTTP_REQUEST_PAYLOAD:input"]
    assert graph.output_stream == ["HTTP_RESPONSE_PAYLOAD:output"]
    (node,) = graph.node
    assert node.name == "LLMExecutor"
    assert node.calculator == "HttpLLMCalculator"
    assert node.input_stream == ["LOOPBACK:loopback", "HTTP_REQUEST_PAYLOAD:input"]
    assert node.output_stream == ["LOOPBACK:loopback", "HTTP_RESPONSE_PAYLOAD:output"]
    assert node.input_side_packet == ["LLM_NODE_RESOURCES:llm"]
    (info,) = node.input_stream_info
    assert (info.tag_index, info.back_edge) == ("LOOPBACK:0", True)

    (options_block,) = node.node_options
    (options,) = list(options_block)
    assert options.type_name == "mediapipe.LLMCalculatorOptions"
    values = {f.name: f.value for f in options.value}
    assert values == {
        "models_path": "./model.gguf",
        "plugin_config": '{"KV_CACHE_PRECISION": "u8", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "32"}',
        "enable_prefix_caching": "false",
        "cache_size": 2,
    }

    handler = node.input_stream_handler
    assert handler is not None and handler.input_stream_handler == "SyncSetInputStreamHandler"
    (extension,) = list(handler.options)
    assert extension.type_name == "mediapipe.SyncSetInputStreamHandlerOptions"
    (sync_set,) = extension.value.all("sync_set")
    assert [f.value for f in sync_set.value.all("tag_index")] == ["LOOPBACK:0"]


def test_a_compact_variant_parses_to_the_same_structure():
    demo = load_graph_config(FIXTURES / "ovms_continuous_batching.pbtxt").config.node[0]
    compact = load_graph_config(FIXTURES / "ovms_compact.pbtxt").config.node[0]
    assert sorted(compact.input_stream) == sorted(demo.input_stream)
    assert sorted(compact.output_stream) == sorted(demo.output_stream)
    assert compact.input_stream_info == demo.input_stream_info
    (options,) = list(compact.node_options[0])
    assert {f.name: f.value for f in options.value}["max_num_seqs"] == 64
    assert options.type_name == "mediapipe.LLMCalculatorOptions"


def test_every_field_remembers_where_it_was_written():
    loaded = load_graph_config(FIXTURES / "ovms_continuous_batching.pbtxt")
    location = loaded.location("node", 0, "calculator")
    assert (location.line, location.column) == (7, 3)
    assert loaded.location("node", 0, "input_stream", 1).line == 9


def test_unknown_graph_fields_are_rejected_with_a_suggestion():
    with pytest.raises(GraphConfigError) as caught:
        parse_graph_config('input_stream: "a"\nnode { calculator: "X" inputstream: "a" }', "g.pbtxt")
    message = str(caught.value)
    assert message.startswith("g.pbtxt:2:24: unknown field 'inputstream'")
    assert "Did you mean 'input_stream'?" in message


def test_a_single_valued_field_given_twice_is_an_error():
    with pytest.raises(GraphConfigError, match=r"g.pbtxt:1:34: field 'calculator' is given twice"):
        parse_graph_config('node { calculator: "A" name: "n" calculator: "B" }', "g.pbtxt")


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        (["TAG:name"], [("TAG", 0, "name")]),
        (["TAG:2:name", "TAG:name"], [("TAG", 2, "name"), ("TAG", 0, "name")]),
        (["a", "b"], [("", 0, "a"), ("", 1, "b")]),
    ],
)
def test_stream_references_use_tag_index_name(specs, expected):
    assert [(r.tag, r.index, r.name) for r in parse_stream_refs(specs)] == expected


@pytest.mark.parametrize(
    ("specs", "words"),
    [
        (["tag:name"], "upper case"),
        (["TAG:x:name"], "not of the form"),
        (["TAG:a", "TAG:0:b"], "connected twice"),
        (["TAG:bad-name"], "letters, digits"),
    ],
)
def test_bad_stream_references_say_what_is_wrong(specs, words):
    with pytest.raises(ValueError, match=words):
        parse_stream_refs(specs)
