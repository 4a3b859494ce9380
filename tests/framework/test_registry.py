"""Calculator discovery: built-ins, folders, entry points, module:Class, and duplicate names."""

import textwrap
from pathlib import Path

import pytest

from ovserve.framework.registry import Registry, RegistryError, build_registry
from ovserve.framework.validation import graph_from_text


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


CALCULATOR_FILE = """
    from ovserve import Calculator, Input, Output

    class {name}(Calculator):
        \"\"\"Adds a suffix.\"\"\"
        TEXT = Input(str)
        OUT = Output(str)

        def process(self, ctx):
            ctx.send(self.OUT, ctx.value(self.TEXT) + "{suffix}")
"""


def test_builtins_are_registered():
    registry = build_registry(entry_points=False)
    assert {"PassThroughCalculator", "RedactCalculator"} <= set(registry.names())
    assert registry.resolve("PassThroughCalculator").origin.startswith("built-in")


def test_two_files_with_the_same_name_in_different_folders_both_load(tmp_path):
    write(tmp_path / "a" / "model.py", CALCULATOR_FILE.format(name="SuffixA", suffix="-a"))
    write(tmp_path / "b" / "model.py", CALCULATOR_FILE.format(name="SuffixB", suffix="-b"))
    registry = build_registry([tmp_path / "a", tmp_path / "b"], builtins=False, entry_points=False)
    assert registry.names() == ["SuffixA", "SuffixB"]
    module_a = registry.resolve("SuffixA").calculator.__module__
    module_b = registry.resolve("SuffixB").calculator.__module__
    assert module_a != module_b


def test_a_name_defined_twice_is_an_error_naming_both_origins(tmp_path):
    write(tmp_path / "a" / "calc.py", CALCULATOR_FILE.format(name="Same", suffix="1"))
    write(tmp_path / "b" / "calc.py", CALCULATOR_FILE.format(name="Same", suffix="2"))
    with pytest.raises(RegistryError) as caught:
        build_registry([tmp_path / "a", tmp_path / "b"], builtins=False, entry_points=False)
    message = str(caught.value)
    assert "calculator name 'Same' is defined twice" in message
    assert str(tmp_path / "a" / "calc.py") in message and str(tmp_path / "b" / "calc.py") in message


def test_loading_the_same_folder_twice_is_not_a_duplicate(tmp_path):
    write(tmp_path / "calc.py", CALCULATOR_FILE.format(name="Once", suffix="!"))
    registry = Registry()
    registry.load_folder(tmp_path)
    registry.load_folder(tmp_path)
    assert registry.names() == ["Once"]


def test_a_file_that_fails_to_import_names_the_file(tmp_path):
    write(tmp_path / "broken.py", "import does_not_exist_anywhere\n")
    with pytest.raises(RegistryError, match=r"broken\.py: importing it failed: ModuleNotFoundError"):
        Registry().load_folder(tmp_path)


def test_a_missing_folder_is_an_error(tmp_path):
    with pytest.raises(RegistryError, match="does not exist"):
        Registry().load_folder(tmp_path / "nowhere")


def test_entry_points_of_installed_packages_register(tmp_path, monkeypatch):
    write(tmp_path / "acme_calcs.py", CALCULATOR_FILE.format(name="AcmeSuffix", suffix="!"))
    write(tmp_path / "acme_calcs-1.0.dist-info" / "METADATA", "Metadata-Version: 2.1\nName: acme-calcs\nVersion: 1.0\n")
    write(tmp_path / "acme_calcs-1.0.dist-info" / "entry_points.txt", "[ovserve.calculators]\nacme = acme_calcs\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry()
    registry.load_entry_points()
    registration = registry.resolve("AcmeSuffix")
    assert "entry point 'acme'" in registration.origin


def test_module_class_references_resolve_without_registration():
    spec = graph_from_text(
        'input_stream: "TEXT:t"\noutput_stream: "UPPER:u"\n'
        'node { calculator: "tests.framework.sample_calculators:Upper" input_stream: "TEXT:t" '
        'output_stream: "UPPER:u" }',
        Registry(),
    )
    assert spec.nodes[0].calculator.__name__ == "Upper"


def test_a_bad_reference_says_why():
    with pytest.raises(KeyError, match="cannot be imported"):
        Registry().resolve("tests.framework.sample_calculators:Nope")


def test_a_subgraph_file_in_a_folder_registers_by_its_type(tmp_path):
    write(tmp_path / "twice.pbtxt", """
        type: "UpperTwice"
        input_stream: "TEXT:in"
        output_stream: "UPPER:out"
        node { calculator: "PassThroughCalculator" input_stream: "in" output_stream: "mid" }
        node { calculator: "PassThroughCalculator" input_stream: "mid" output_stream: "out" }
    """)
    write(tmp_path / "not_a_subgraph.pbtxt", 'input_stream: "x"\n')
    registry = build_registry([tmp_path], entry_points=False)
    assert registry.resolve("UpperTwice").kind == "subgraph"
