"""The example calculator from the README, tested the way users test theirs."""

import pytest

from ovserve.calculators.examples.redact import RedactCalculator
from ovserve.framework import Graph, build_registry, load_graph
from ovserve.graphs import graph_path
from ovserve.testing import CalculatorRunner, run_calculator


async def test_redact_replaces_listed_words_and_counts_them():
    outputs = await run_calculator(
        RedactCalculator,
        {"TEXT": ["my Secret plan", "nothing to hide", "secret, secret!"]},
        options={"words": ["secret"], "replacement": "***"},
    )
    assert outputs == {"REDACTED": ["my *** plan", "nothing to hide", "***, ***!"], "COUNT": [1, 0, 2]}


async def test_redact_matches_whole_words_only():
    async with CalculatorRunner(RedactCalculator, {"words": ["cat"]}) as runner:
        await runner.send("TEXT", "cat catalog concat")
        runner.close_inputs()
        assert await runner.collect("REDACTED") == ["[redacted] catalog concat"]


def test_redact_needs_at_least_one_word():
    with pytest.raises(ValueError, match="at least 1 item"):
        CalculatorRunner(RedactCalculator, {"words": []})


async def test_the_example_graph_runs_the_example_calculator():
    graph = await Graph.start(load_graph(graph_path("redact_example.pbtxt"), build_registry()))
    async with graph.run() as run:
        await run.send("TEXT", "the password is secret")
        run.close_inputs()
        assert await run.collect("CLEAN") == ["the *** is ***"]
