"""Regexes and EBNF grammars are read as the engine's XGrammar reads them, before the engine sees them.

The verdicts below were measured one by one against openvino-genai 2026.4's XGrammar (a refused one failed the
engine's grammar compilation); ovserve may refuse more than XGrammar does, never less."""

import pytest

from ovserve.calculators.llm.grammar_check import check_ebnf, check_regex
from ovserve.errors import RequestError

ENGINE_TAKES_REGEX = ["(yes|no)", r"\Aa", r"a\Z", r"^a$", r"\d\w\s\D\W\S", r"[\d\s]", "()", r"\x41", r"\u00e9",
                      r"\.", r"[a\-z]", r"[\]]", r"\n\t\r", r"[^\n]", "a{2,}", "x*?", r"[\w-]", "é+", "[😀]", "(?:ab)+"]
ENGINE_FAILS_ON_REGEX = [r"\bword\b", "a{,3}", "a|", "|a", "[]a]", r"\p{L}", r"(a)\1", "[a-", "(a", "a{3,2}",
                         "(?i)a", "(?=a)b", "a**"]
ENGINE_TAKES_GRAMMAR = ['root ::= ""', "root ::= ()", "root ::= []", r'root ::= "\x41\t\n\r\\\""',
                        r"root ::= [\]\[\-\^\\a]", 'root ::= "a"{2,3}', 'root ::= "a"{2}', r'root ::= "\U0001F600"',
                        'root-x ::= "a"\nroot ::= root-x', "root ::= [^a]", 'root ::= "a" "b"\n\n  x ::= "c"',
                        'root ::= "a"+ "b"* "c"? ', 'root ::= ( "a" | "b" )*', 'root ::= "a" # comment',
                        'root::="a"', 'root ::= "a" |\n "b"', 'root_1 ::= "a"\nroot ::= root_1', "root ::= [a-]",
                        "root ::= [-a]", 'root ::= ["]']
ENGINE_FAILS_ON_GRAMMAR = ["root ::= [z-a]", 'root ::= "a"\nroot ::= "b"', "root ::= 'a'", 'root ::= "a"{,3}',
                           'root ::= "a"{3,2}', r'root ::= "\/"', r"root ::= [\d]", "root ::= .", 'x ::= "a"',
                           'root ::= "a" | | "b"', '1x ::= "a"\nroot ::= 1x', 'root ::= "a\nb"', "root ::= foo",
                           'root ::= "yes" |', 'root ::= "a" (= "b") "b"', ""]


@pytest.mark.parametrize("pattern", ENGINE_TAKES_REGEX)
def test_a_regex_the_engine_compiles_is_taken(pattern):
    check_regex(pattern, "structured_outputs.regex")


@pytest.mark.parametrize("pattern", ENGINE_FAILS_ON_REGEX)
def test_a_regex_the_engine_would_fail_on_is_refused_by_name(pattern):
    with pytest.raises(RequestError) as refused:
        check_regex(pattern, "structured_outputs.regex")
    assert refused.value.status == 400 and refused.value.param == "structured_outputs.regex"


@pytest.mark.parametrize("grammar", ENGINE_TAKES_GRAMMAR)
def test_a_grammar_the_engine_compiles_is_taken(grammar):
    check_ebnf(grammar, "structured_outputs.grammar")


@pytest.mark.parametrize("grammar", ENGINE_FAILS_ON_GRAMMAR)
def test_a_grammar_the_engine_would_fail_on_is_refused_saying_where(grammar):
    with pytest.raises(RequestError) as refused:
        check_ebnf(grammar, "structured_outputs.grammar")
    assert refused.value.status == 400 and refused.value.param == "structured_outputs.grammar"


def test_the_error_names_the_line_and_column():
    with pytest.raises(RequestError, match="'undefined_rule' is used but not defined at line 2, column 11"):
        check_ebnf('root ::= a\na ::= "x" undefined_rule', "g")


@pytest.mark.parametrize("hostile", ["\\" * 60_000, "root ::= " + "(" * 5000 + '"a"' + ")" * 5000,
                                     'root ::= "a"{99999}', "[" * 60_000, "x" * 70_000])
def test_hostile_grammars_are_refused_without_recursion(hostile):
    with pytest.raises(RequestError):
        check_ebnf(hostile, "g")


@pytest.mark.parametrize("hostile", ["(" * 60_000, "a{1000000}", "x" * 70_000, "[" * 60_000])
def test_hostile_regexes_are_refused(hostile):
    with pytest.raises(RequestError):
        check_regex(hostile, "r")


@pytest.mark.parametrize("pattern", ["a{}", "a{1, 2}", "x{ 2}", "x{2 }", "{", "a{", "x{abc}", r"\N{DIGIT ONE}", "a*+",
                                     "a++", "a?+", "a{2}+", "a{1,}+", "a|^", "^|a", "a|$", "(a|^)", "a{99999999999}",
                                     "a{" + "1" * 5000 + "}", "{" + "1" * 65000])
def test_what_a_review_found_the_engine_refuses_is_refused_too(pattern):
    with pytest.raises(RequestError):
        check_regex(pattern, "r")


@pytest.mark.parametrize("grammar", ['root ::= "a" b ::= "c"', 'root ::= b c ::= "x"\nb ::= "y"',
                                     'root ::= "a"{' + "1" * 5000 + "}", 'root ::= "a" {' + " " * 65000,
                                     'root ::= "a"{ 2}'])
def test_rules_begin_their_own_lines_and_repetitions_are_plain_numbers(grammar):
    with pytest.raises(RequestError):
        check_ebnf(grammar, "g")
