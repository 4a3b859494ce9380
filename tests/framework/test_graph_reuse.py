"""A graph that replaces another (a reload) takes over the resources whose settings did not change."""

import pytest

from ovserve.framework.runtime import Graph, ResourceError
from ovserve.framework.validation import graph_from_text
from tests.framework.sample_calculators import GreetingModel, sample_registry


def greeting_graph(word: str, greet_node: str = "greet") -> str:
    return f"""
        input_stream: "NAME:name"
        output_stream: "GREETING:greeting"
        node {{ name: "model" calculator: "GreetingModel" output_side_packet: "MODEL:model"
               node_options {{ [type.googleapis.com/test.GreetingOptions] {{ word: "{word}" }} }} }}
        node {{ name: "{greet_node}" calculator: "Greet" input_stream: "NAME:name" input_side_packet: "MODEL:model"
               output_stream: "GREETING:greeting" }}
    """


async def greet(graph: Graph, name: str) -> list[str]:
    async with graph.run() as run:
        await run.send("NAME", name)
        run.close_inputs()
        return await run.collect("GREETING")


class Broken(GreetingModel):
    """A model resource whose file is missing."""

    def open(self, ctx):
        raise OSError("no such model")


def broken_registry():
    registry = sample_registry()
    registry.add(Broken, "test")
    return registry


@pytest.fixture(autouse=True)
def count_from_zero():
    GreetingModel.opened = GreetingModel.closed = 0


async def test_an_edit_of_other_nodes_keeps_the_resource_open_once():
    old = await Graph.start(graph_from_text(greeting_graph("hi"), sample_registry()))
    new = await Graph.start(graph_from_text(greeting_graph("hi", greet_node="renamed"), sample_registry()), reuse=old)
    assert GreetingModel.opened == 1
    assert new.side_packets["model"] is old.side_packets["model"]
    assert new.reused_from_predecessor() == ["model"]
    assert await greet(old, "a") == ["hi a"], "the old graph still serves its runs"
    await old.stop()
    assert GreetingModel.closed == 0, "the old graph does not close what the new one took over"
    assert await greet(new, "b") == ["hi b"]
    await new.stop()
    assert GreetingModel.closed == 1


async def test_changed_options_open_a_new_resource_and_the_old_one_closes_with_its_graph():
    old = await Graph.start(graph_from_text(greeting_graph("hi"), sample_registry()))
    new = await Graph.start(graph_from_text(greeting_graph("hello"), sample_registry()), reuse=old)
    assert GreetingModel.opened == 2
    assert new.reused_from_predecessor() == []
    assert await greet(new, "b") == ["hello b"]
    await old.stop()
    assert GreetingModel.closed == 1
    await new.stop()
    assert GreetingModel.closed == 2


async def test_a_failed_start_takes_nothing_over():
    registry = broken_registry()
    old = await Graph.start(graph_from_text(greeting_graph("hi"), registry))
    broken = greeting_graph("hi") + 'node { name: "other" calculator: "Broken" output_side_packet: "MODEL:other" }'
    with pytest.raises(ResourceError, match="'other'"):
        await Graph.start(graph_from_text(broken, registry), reuse=old)
    await old.stop()
    assert GreetingModel.closed == 1, "the resource stayed the old graph's, and closed with it"


async def test_a_resource_shared_along_a_chain_of_reloads_closes_when_its_last_holder_stops():
    first = await Graph.start(graph_from_text(greeting_graph("hi"), sample_registry()))
    second = await Graph.start(graph_from_text(greeting_graph("hi", greet_node="b"), sample_registry()), reuse=first)
    third = await Graph.start(graph_from_text(greeting_graph("hello"), sample_registry()), reuse=second)
    await second.stop()  # the middle version ends first: the first still serves a run on the shared resource
    assert GreetingModel.closed == 0
    assert await greet(first, "a") == ["hi a"]
    await first.stop()
    assert GreetingModel.closed == 1
    await third.stop()
    assert GreetingModel.opened == GreetingModel.closed == 2


async def test_a_stopped_graph_offers_nothing_to_take_over():
    old = await Graph.start(graph_from_text(greeting_graph("hi"), sample_registry()))
    await old.stop()
    new = await Graph.start(graph_from_text(greeting_graph("hi"), sample_registry()), reuse=old)
    assert new.reused_from_predecessor() == [] and GreetingModel.opened == 2
    await new.stop()
    await new.stop()  # twice is harmless
    assert GreetingModel.closed == 2


async def test_a_broken_resource_names_its_graph_file_and_line():
    registry = broken_registry()
    spec = graph_from_text('\nnode { name: "model" calculator: "Broken" output_side_packet: "MODEL:m" }', registry,
                           source="graph.pbtxt")
    with pytest.raises(ResourceError, match=r"^graph.pbtxt:2:\d+: resource node 'model'"):
        await Graph.start(spec)
