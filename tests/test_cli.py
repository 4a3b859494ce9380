"""The command line: graph check / show and the calculator list, as a user runs them."""

import subprocess
import sys
from pathlib import Path

import pytest

from ovserve.cli import main

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "graphs"


def test_every_shipped_graph_passes_check(capsys):
    graphs = sorted(str(p) for p in (REPO / "graphs").glob("*.pbtxt"))
    assert graphs
    assert main(["graph", "check", *graphs]) == 0
    assert capsys.readouterr().out.count("ok ") == len(graphs)


def test_a_broken_graph_fails_check_with_file_line_and_node(tmp_path, capsys):
    broken = tmp_path / "broken.pbtxt"
    broken.write_text('input_stream: "TEXT:t"\nnode {\n  name: "r"\n  calculator: "RedactCalculatr"\n}\n')
    assert main(["graph", "check", str(broken)]) == 1
    err = capsys.readouterr().err
    assert f"{broken}:4:3: node 'r': unknown calculator 'RedactCalculatr'. Did you mean 'RedactCalculator'?" in err


def test_graph_show_prints_mermaid_and_dot(capsys):
    assert main(["graph", "show", str(REPO / "graphs" / "redact_example.pbtxt")]) == 0
    mermaid = capsys.readouterr().out
    assert mermaid.startswith("flowchart LR") and "redact<br/>RedactCalculator" in mermaid
    assert main(["graph", "show", "--format", "dot", str(REPO / "graphs" / "redact_example.pbtxt")]) == 0
    dot = capsys.readouterr().out
    assert dot.startswith("digraph") and 'label="redact\\nRedactCalculator"' in dot


def test_calculators_lists_ports_and_options(capsys):
    assert main(["calculators"]) == 0
    out = capsys.readouterr().out
    assert "RedactCalculator  [calculator, built-in" in out
    assert "input TEXT: str - text to clean" in out
    assert "words: list[str] (required)" in out


def test_user_calculators_folder_is_loaded(tmp_path, capsys):
    (tmp_path / "mine.py").write_text(
        "from ovserve import Calculator, Input\n\nclass MyCalc(Calculator):\n    X = Input(int)\n"
        "    def process(self, ctx):\n        pass\n"
    )
    graph = tmp_path / "g.pbtxt"
    graph.write_text('input_stream: "X:x"\nnode { calculator: "MyCalc" input_stream: "X:x" }\n')
    assert main(["graph", "check", "--calculators", str(tmp_path), str(graph)]) == 0
    assert main(["graph", "check", str(graph)]) == 1


@pytest.mark.parametrize("argv", [["graph", "check", "--help"], ["calculators", "--help"]])
def test_the_installed_command_runs(argv):
    result = subprocess.run([sys.executable, "-m", "ovserve.cli", *argv], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "usage: ovserve" in result.stdout
