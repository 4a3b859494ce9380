"""The text-format reader: what real MediaPipe/OVMS files contain, and precise syntax errors."""

import math

import pytest

from ovserve.framework.textproto import Identifier, Message, TextProtoSyntaxError, parse_text_proto


def test_fields_with_and_without_colons_commas_and_semicolons():
    message = parse_text_proto('a: 1, b: "x"; c { d: 2 } e: { f: 3 }, g < h: 4 >')
    assert [f.name for f in message] == ["a", "b", "c", "e", "g"]
    assert message.first("a").value == 1
    assert message.first("c").value.first("d").value == 2
    assert message.first("e").value.first("f").value == 3
    assert message.first("g").value.first("h").value == 4


def test_strings_single_double_escapes_and_concatenation():
    message = parse_text_proto(r"""a: 'it\'s' b: "say \"hi\"\n" c: "x" 'y' d: "\x41\101\u00e9" e: '{"k": "v"}'""")
    assert message.first("a").value == "it's"
    assert message.first("b").value == 'say "hi"\n'
    assert message.first("c").value == "xy"
    assert message.first("d").value == "AAé"
    assert message.first("e").value == '{"k": "v"}'


def test_numbers_identifiers_and_lists():
    message = parse_text_proto("i: -7 h: 0x1F o: 017 f: 2.5 e: 1e-3 s: 1.5f n: -inf t: true u: ENUM_VALUE l: [1, 2, 3]")
    values = {f.name: f.value for f in message}
    assert values["i"] == -7 and values["h"] == 31 and values["o"] == 15
    assert values["f"] == 2.5 and values["e"] == 0.001 and values["s"] == 1.5
    assert math.isinf(values["n"]) and values["n"] < 0
    assert values["t"] == "true" and isinstance(values["t"], Identifier)
    assert values["u"] == "ENUM_VALUE"
    assert values["l"] == [1, 2, 3]


def test_repeated_fields_keep_order_and_locations():
    message = parse_text_proto('x: "a"\n# a comment\n  x: "b"  # trailing\nx: "c"', "g.pbtxt")
    fields = message.all("x")
    assert [f.value for f in fields] == ["a", "b", "c"]
    assert [(f.location.line, f.location.column) for f in fields] == [(1, 1), (3, 3), (4, 1)]
    assert str(fields[1].location) == "g.pbtxt:3:3"


@pytest.mark.parametrize(
    "name",
    [
        "[type.googleapis.com/mediapipe.LLMCalculatorOptions]",
        "[type.googleapis.com / mediapipe.LLMCalculatorOptions]",
        "[ type.googleapis.com/ mediapipe . LLMCalculatorOptions ]",
    ],
)
def test_any_type_names_may_contain_spaces(name):
    message = parse_text_proto(f"node_options: {{ {name}: {{ models_path: './' }} }}")
    options = message.first("node_options").value
    (field,) = list(options)
    assert field.is_extension
    assert field.name == "[type.googleapis.com/mediapipe.LLMCalculatorOptions]"
    assert field.type_name == "mediapipe.LLMCalculatorOptions"
    assert isinstance(field.value, Message)
    assert field.value.first("models_path").value == "./"


def test_extension_names_drop_the_ext_suffix():
    message = parse_text_proto("options { [mediapipe.SyncSetInputStreamHandlerOptions.ext] { sync_set { } } }")
    (field,) = list(message.first("options").value)
    assert field.type_name == "mediapipe.SyncSetInputStreamHandlerOptions"


@pytest.mark.parametrize(
    ("text", "line", "column", "words"),
    [
        ('node {\n  name: "x"\n', 3, 1, "expected '}' to close the message opened at f.pbtxt:1:6"),
        ('a: "abc\nb: 1', 1, 4, "string is not closed"),
        ("a: 1\n  b c", 2, 5, "expected ':' or '{' after field name 'b'"),
        ("a: }", 1, 4, "expected a value"),
        ("a: [1, 2", 1, 9, "',' or ']'"),
        ("a: 1 @", 1, 6, "unexpected character '@'"),
        ('a: "\\q"', 1, 4, "unknown escape"),
        ("[ 1 ]: 2", 1, 3, "type name"),
    ],
)
def test_syntax_errors_name_file_line_and_column(text, line, column, words):
    with pytest.raises(TextProtoSyntaxError) as caught:
        parse_text_proto(text, "f.pbtxt")
    error = caught.value
    assert (error.location.file, error.location.line, error.location.column) == ("f.pbtxt", line, column)
    assert str(error).startswith(f"f.pbtxt:{line}:{column}: ")
    assert words in str(error)
