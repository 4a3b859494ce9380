"""Regular expressions and EBNF grammars for constrained decoding, checked before the engine sees them.

The engine (OpenVINO GenAI's XGrammar backend) compiles a request's grammar inside an engine step, and one it
cannot compile fails that step for every request in it. So a regex or grammar is read here first, by the rules
XGrammar's parsers follow (measured against openvino-genai 2026.4, ``tests/engine/engine_fuzz.py`` keeps them
honest), and anything they would reject, or that ovserve cannot be sure of, is a 400 that says where and why.

Regexes: Python's ``re`` must accept the pattern, and it must not use what XGrammar lacks (word boundaries,
backreferences, Unicode property classes, ``(?...)`` groups other than ``(?:``, ``{,n}``, empty alternatives or
a class starting with ``]``). Grammars: XGrammar's EBNF (``name ::= ...`` rules with ``"strings"``, ``[classes]``,
rule references, ``( )``, ``|``, ``* + ?`` and ``{m}``, ``{m,}``, ``{m,n}``, ``#`` comments), with a ``root`` rule
and every referenced rule defined once.
"""

from __future__ import annotations

import re
import warnings

from ovserve.errors import RequestError

#: The longest regex or grammar taken, in characters.
MAX_GRAMMAR_LENGTH = 64 * 1024
#: The largest repetition count (larger ones make the engine's grammar huge).
MAX_REPEAT = 10_000
#: The deepest nesting of groups.
MAX_DEPTH = 64


def _refuse(param: str, why: str) -> RequestError:
    return RequestError(f"'{param}' {why}", param=param, code="invalid_value")


# --- regular expressions -------------------------------------------------------------------------------------

_REPEAT = re.compile(r"\{(\d{1,6})(?:(,)(\d{0,6}))?\}")


def check_regex(pattern: str, param: str) -> None:
    """Refuse a regex the engine's regex compiler would fail on (a 400 naming ``param``)."""
    if len(pattern) > MAX_GRAMMAR_LENGTH:
        raise _refuse(param, f"is longer than {MAX_GRAMMAR_LENGTH} characters")
    if _nesting(pattern) > MAX_DEPTH:
        raise _refuse(param, f"nests groups more than {MAX_DEPTH} deep")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # re's FutureWarnings (a "[[" that may one day mean a nested set)
            re.compile(pattern)
    except (re.error, OverflowError, RecursionError, ValueError) as error:
        raise _refuse(param, f"is not a valid regular expression: {error}") from None
    position, in_class = 0, False
    while position < len(pattern):
        char = pattern[position]
        if char == "\\":
            escaped = pattern[position + 1:position + 2]
            if not in_class and escaped in ("b", "B"):
                raise _refuse(param, f"has a word boundary (\\{escaped}) at {position}, which constrained decoding "
                                     f"does not support")
            if escaped in ("p", "P", "N") or (escaped.isdigit() and escaped != "0"):
                raise _refuse(param, f"has \\{escaped} at {position} (a Unicode property or name, or a backreference), "
                                     f"which constrained decoding does not support")
            position += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            start = position + 1 + (pattern[position + 1:position + 2] == "^")
            if pattern[start:start + 1] == "]":
                raise _refuse(param, f"has a character class starting with ']' at {position}; write '\\]'")
            position = start
            continue
        else:
            _check_regex_operator(pattern, position, param)
        position += 1


def _nesting(pattern: str) -> int:
    """How deep the pattern's parentheses nest (escapes skipped; an upper bound, classes not told apart)."""
    depth = deepest = 0
    escaped = False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth = max(depth - 1, 0)
    return deepest


def _check_regex_operator(pattern: str, position: int, param: str) -> None:
    char = pattern[position]
    if char == "(" and pattern[position + 1:position + 2] == "?" and pattern[position + 2:position + 3] != ":":
        raise _refuse(param, f"has a (?...) group at {position} (lookaround, flags, named or atomic), which "
                             f"constrained decoding does not support; (?:...) is")
    if char == "|":
        before = pattern[position - 1:position] if position else ""
        after = pattern[position + 1:position + 2]
        group_start = pattern[max(position - 3, 0):position] == "(?:"
        if before in ("", "(", "|", "^") or after in ("", ")", "|", "$") or group_start:
            raise _refuse(param, f"has an empty alternative (or an anchor alone) at {position}, which constrained "
                                 f"decoding does not support; write (x)? for an optional x")
    if char in "*+?" and pattern[position + 1:position + 2] == "+":
        raise _refuse(param, f"has a possessive quantifier {char}+ at {position}, which constrained decoding does not "
                             f"support")
    if (char == "^" and position > 0) or (char == "$" and position < len(pattern) - 1):
        raise _refuse(param, f"has {char} at {position}: constrained decoding takes ^ only at the start and $ only at "
                             f"the end of the pattern")
    if char == "{":
        repeat = _REPEAT.match(pattern, position)
        if repeat is None:
            raise _refuse(param, f"has a '{{' at {position} that is no repetition {{m}}, {{m,}} or {{m,n}} (at most 6 "
                                 f"digits, no spaces): write '\\{{' for the character")
        low, comma, high = repeat.groups()
        if pattern[repeat.end():repeat.end() + 1] == "+":
            raise _refuse(param, f"has a possessive quantifier at {repeat.end()}, which constrained decoding does not "
                                 f"support")
        _check_counts(param, position, int(low), int(high) if high else None if comma else int(low))


def _check_counts(param: str, position: int, low: int, high: int | None) -> None:
    if max(low, high or 0) > MAX_REPEAT:
        raise _refuse(param, f"repeats something more than {MAX_REPEAT} times at {position}")
    if high is not None and low > high:
        raise _refuse(param, f"has a repetition at {position} whose lower bound {low} is above its upper bound {high}")


# --- EBNF grammars -------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<space>[ \t\r\n]+|\#[^\n]*)
  | (?P<define>::=)
  | (?P<name>[A-Za-z_][A-Za-z0-9_-]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<klass>\[(?:[^\]\\\n]|\\.)*\])
  | (?P<repeat>\{\d{1,6}(?:,\d{0,6})?\})
  | (?P<op>[()|*+?])
""", re.VERBOSE)
_STRING_ESCAPES = re.compile(r'\\(?:[\\"nrt]|x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8})')
_CLASS_ESCAPES = re.compile(r'\\(?:[\\"nrt\]\[\-^]|x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8})')


def _tokens(grammar: str, param: str) -> list[tuple[str, str, int]]:
    """(kind, text, where) of each token of ``grammar``; comments and blanks dropped."""
    tokens, position = [], 0
    while position < len(grammar):
        match = _TOKEN.match(grammar, position)
        if match is None:
            raise _refuse(param, f"has {grammar[position]!r} at {_where(grammar, position)}, which XGrammar's EBNF "
                                 f"does not have (strings are in double quotes; '.' and single quotes do not exist)")
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append((kind, match.group(), position))
        position = match.end()
    return tokens


def _where(grammar: str, position: int) -> str:
    line = grammar.count("\n", 0, position) + 1
    return f"line {line}, column {position - (grammar.rfind(chr(10), 0, position) + 1) + 1}"


class _EbnfReader:
    """A recursive-descent reading of one grammar: its rules, and the rules they refer to."""

    def __init__(self, grammar: str, param: str) -> None:
        self.grammar = grammar
        self.param = param
        self.tokens = _tokens(grammar, param)
        self.at = 0
        self.defined: dict[str, int] = {}
        self.used: dict[str, int] = {}

    def fail(self, why: str, position: int | None = None) -> RequestError:
        if position is None:
            position = self.tokens[self.at][2] if self.at < len(self.tokens) else len(self.grammar)
        return _refuse(self.param, f"is not a grammar XGrammar's EBNF reads: {why} at "
                                   f"{_where(self.grammar, position)}")

    def rule_starts(self) -> bool:
        return (self.at + 1 < len(self.tokens) and self.tokens[self.at][0] == "name"
                and self.tokens[self.at + 1][0] == "define")

    def at_line_start(self, position: int) -> bool:
        return not self.grammar[self.grammar.rfind("\n", 0, position) + 1:position].strip()

    def read(self) -> None:
        if not self.tokens:
            raise self.fail("it is empty")
        while self.at < len(self.tokens):
            if not self.rule_starts():
                raise self.fail("a rule 'name ::= ...' is expected")
            _, name, position = self.tokens[self.at]
            if not self.at_line_start(position):
                raise self.fail(f"the rule {name!r} must begin on a line of its own", position)
            if name in self.defined:
                raise self.fail(f"the rule {name!r} is defined twice", position)
            self.defined[name] = position
            self.at += 2
            self.alternatives(0)
        if "root" not in self.defined:
            raise _refuse(self.param, "has no 'root' rule, where the answer starts")
        missing = next((name for name in self.used if name not in self.defined), None)
        if missing is not None:
            raise self.fail(f"the rule {missing!r} is used but not defined", self.used[missing])

    def alternatives(self, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise self.fail(f"groups are nested more than {MAX_DEPTH} deep")
        self.sequence(depth)
        while self.at < len(self.tokens) and self.tokens[self.at][1] == "|":
            self.at += 1
            self.sequence(depth)

    def sequence(self, depth: int) -> None:
        count = 0
        while self.at < len(self.tokens) and not self.rule_starts() and self.tokens[self.at][1] not in ("|", ")"):
            self.element(depth)
            count += 1
        if not count:
            raise self.fail("an element (a string, a class, a rule or a group) is expected")

    def element(self, depth: int) -> None:
        kind, text, position = self.tokens[self.at]
        self.at += 1
        if kind == "name":
            self.used.setdefault(text, position)
        elif kind == "string":
            self.escapes(text[1:-1], _STRING_ESCAPES, position)
        elif kind == "klass":
            self.character_class(text, position)
        elif text == "(":
            if self.at < len(self.tokens) and self.tokens[self.at][1] == ")":
                self.at += 1  # () matches the empty string, as XGrammar reads it
            else:
                self.alternatives(depth + 1)
                if self.at >= len(self.tokens) or self.tokens[self.at][1] != ")":
                    raise self.fail("')' is expected")
                self.at += 1
        else:
            raise self.fail(f"{text!r} cannot start an element", position)
        self.quantifier()

    def quantifier(self) -> None:
        if self.at >= len(self.tokens):
            return
        kind, text, position = self.tokens[self.at]
        if text in ("*", "+", "?"):
            self.at += 1
        elif kind == "repeat":
            self.at += 1
            low, comma, high = text[1:-1].partition(",")
            _check_counts(self.param, position, int(low), int(high) if high else None if comma else int(low))

    def escapes(self, body: str, allowed: re.Pattern[str], position: int) -> list[tuple[str, bool]]:
        """The characters of a string's or class's ``body``, escapes decoded: (character, whether it was written
        bare); an escape XGrammar does not read is refused."""
        characters, index = [], 0
        while index < len(body):
            if body[index] != "\\":
                characters.append((body[index], True))
                index += 1
                continue
            escape = allowed.match(body, index)
            if escape is None:
                raise self.fail(f"the escape {body[index:index + 2]!r} is not one XGrammar reads", position + index)
            code = escape.group()[1:]
            if code[0] in "xuU":
                character = chr(min(int(code[1:], 16), 0x10FFFF))
            else:
                character = {"n": "\n", "r": "\r", "t": "\t"}.get(code, code)
            characters.append((character, False))
            index = escape.end()
        return characters

    def character_class(self, text: str, position: int) -> None:
        characters = self.escapes(text[1:-1].removeprefix("^"), _CLASS_ESCAPES, position)
        for index in range(1, len(characters) - 1):
            if characters[index] == ("-", True) and characters[index - 1][0] > characters[index + 1][0]:
                raise self.fail(f"the class {text} has a range whose start is after its end", position)


def check_ebnf(grammar: str, param: str) -> None:
    """Refuse a grammar the engine's EBNF parser would fail on (a 400 naming ``param`` and where it fails)."""
    if len(grammar) > MAX_GRAMMAR_LENGTH:
        raise _refuse(param, f"is longer than {MAX_GRAMMAR_LENGTH} characters")
    _EbnfReader(grammar, param).read()
