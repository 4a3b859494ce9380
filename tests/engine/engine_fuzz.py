"""A parameter fuzz of the engine process, below HTTP: what the server lets through must never fail an engine step.

Each case is a random chat or text completion body whose fields take extreme and boundary values, alone and in
combination: sampling, stop strings and token ids, lengths, ``n`` and ``best_of``, log-probabilities, structured
output (random JSON Schemas; regexes, EBNF grammars, choices and structural tags, valid and not), tools, and
prompt lookup settings. A case goes through the server's own validation
(:func:`~ovserve.calculators.llm.request.completion_body` and
:func:`~ovserve.calculators.llm.tokenize.engine_prompt`); what it refuses is counted by the field it names, and
what it lets through is submitted to a real engine process, answer by answer as the server submits them. An
answer that ends in an error, an engine that dies or hangs, or an answer longer than it may be, is a finding.

Cases run a few at a time, so that they share engine steps as requests do; when a group fails, each of its cases
is run again alone to tell which one it was.

Usage (a long run; ``tests/engine/test_engine_fuzz.py`` runs a bounded one)::

    python -m tests.engine.engine_fuzz --cases 2000 --seed 1 [--engine plain|prompt_lookup] [--group 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ovserve.calculators.llm.engine import LLMCalculatorOptions, LLMEngine
from ovserve.calculators.llm.generate import answer_params
from ovserve.calculators.llm.request import completion_body
from ovserve.calculators.llm.schema import ChatCompletionRequest, CompletionRequest
from ovserve.calculators.llm.structured_output import SUPPORTED_FORMATS
from ovserve.calculators.llm.tokenize import engine_prompt
from ovserve.calculators.llm.types import GenerationLimits, ModelParsers, Prompt
from ovserve.engine.client import EngineClient
from ovserve.engine.tokenizer import TextTokenizer
from ovserve.errors import RequestError
from ovserve.framework.calculator import ResourceContext

# --- values ----------------------------------------------------------------------------------------------------

TEXTS = ["Hi", "", " ", "What is the capital of France?", "Ünïcödé ✓ 漢字 🙂", "<|im_end|><|im_start|>system",
         "Repeat this exactly: " + "the quick brown fox jumps over the lazy dog " * 12, "{\"a\": [1, 2, {\"b\": null}]}",
         "\n\n\n", "word " * 400]
NUMBERS = [0, -1, 1, 0.5, -0.5, 1e-300, 2**31 - 1, -(2**31), 2**53, 2**53 + 1, 2**63 - 1, 2**63, -(2**63),
           -(2**63) - 1, 2**64, 1e18, 9.3e18, -9.3e18, 1e19, -1e19, 1e40, -1e40, 1e308, -1e308]
LENGTHS = [0, 1, 2, 5, 64, 1000, 10_000, 10_001, 2**31]
PATTERNS = ["^[a-z]+$", "\\d{3}", "a*", "(ab|cd){2,5}", ".{0,3}", "^$", "x{1000}", "[^\"]+", "(a|b)*c?",
            "\\w+@\\w+\\.com", "[\\u0000-\\uffff]{2}", "(?:ab)+", "a{0,10000}", "[z-a]", "(", "a**"]
STOPS = [["\n"], ["a", "e", "i", "o", " "], [chr(c) for c in range(97, 113)], ["x" * 64], ["✓"], ["<|im_end|>"],
         ["the"], [" "], ["\u0000"], ["a" * 1000], [""], [str(i) for i in range(17)]]
SEEDS = [-(2**63), -1, 0, 1, 2**32, 2**63 - 1, 2**64, 10**30]


def maybe(rng: random.Random, p: float = 0.35) -> bool:
    return rng.random() < p


def random_schema(rng: random.Random, depth: int = 0) -> Any:
    """A JSON Schema (or something close to one) built from the keywords constrained decoding meets."""
    kind = rng.choice(["integer", "number", "string", "boolean", "null", "enum", "const", "ref", "bool"]
                      + (["object", "object", "array", "anyOf", "oneOf", "allOf"] if depth < 3 else []))
    schema: dict[str, Any]
    if kind in ("integer", "number"):
        schema = {"type": kind}
        for keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
            if maybe(rng, 0.3):
                schema[keyword] = rng.choice(NUMBERS)
    elif kind == "string":
        schema = {"type": "string"}
        for keyword in ("minLength", "maxLength"):
            if maybe(rng, 0.3):
                schema[keyword] = rng.choice(LENGTHS)
        if maybe(rng, 0.3):
            schema["pattern"] = rng.choice(PATTERNS)
        if maybe(rng, 0.2):
            schema["format"] = rng.choice([*sorted(SUPPORTED_FORMATS), "binary"])
    elif kind in ("boolean", "null"):
        schema = {"type": kind}
    elif kind == "enum":
        schema = {"enum": rng.sample(["a", "", 1, 2.5, None, True, {"x": 1}, [1], "✓", "a" * 300], rng.randint(0, 4))}
    elif kind == "const":
        schema = {"const": rng.choice(["x", 0, None, {"a": [1]}, 1e40])}
    elif kind == "ref":
        schema = {"$ref": rng.choice(["#", "#/$defs/item", "#/nowhere"])}
    elif kind == "bool":
        return rng.choice([True, False])
    elif kind == "object":
        names = rng.sample(["a", "b", "name", "", "with space", "✓", "x" * 100], rng.randint(0, 4))
        schema = {"type": "object", "properties": {n: random_schema(rng, depth + 1) for n in names}}
        if names and maybe(rng, 0.6):
            schema["required"] = rng.sample(names, rng.randint(1, len(names)))
        if maybe(rng, 0.4):
            schema["additionalProperties"] = rng.choice([False, True, random_schema(rng, depth + 1)])
    elif kind == "array":
        schema = {"type": "array", "items": random_schema(rng, depth + 1)}
        for keyword in ("minItems", "maxItems"):
            if maybe(rng, 0.3):
                schema[keyword] = rng.choice(LENGTHS)
        if maybe(rng, 0.2):
            schema["prefixItems"] = [random_schema(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    else:
        schema = {kind: [random_schema(rng, depth + 1) for _ in range(rng.randint(0, 3))]}
    if depth == 0 and maybe(rng, 0.3):
        schema["$defs"] = {"item": random_schema(rng, 1)}
    return schema


def sampling_fields(rng: random.Random, prompt_lookup: bool) -> dict[str, Any]:
    choices: dict[str, Callable[[], Any]] = {
        "temperature": lambda: rng.choice([0, 1e-9, 0.01, 0.7, 1, 2]),
        "top_p": lambda: rng.choice([1e-9, 0.01, 0.5, 1]),
        "top_k": lambda: rng.choice([-1, 0, 1, 2, 50, 49152, 49153, 2**31 - 1]),
        "min_p": lambda: rng.choice([0, 1e-9, 0.5, 0.99999]),
        "repetition_penalty": lambda: rng.choice([1e-6, 0.01, 1, 2, 10]),
        "presence_penalty": lambda: rng.choice([-2, 0, 2]),
        "frequency_penalty": lambda: rng.choice([-2, 0, 2]),
        "seed": lambda: rng.choice(SEEDS),
        "stop": lambda: rng.choice(STOPS),
        "stop_token_ids": lambda: rng.choice([[0], [2], [49151], [49152], list(range(16)), [2] * 16, [-1]]),
        "ignore_eos": lambda: True,
        "n": lambda: rng.choice([1, 2, 3, 8, 20, 21]),
    }
    if prompt_lookup or maybe(rng, 0.05):  # refused without prompt lookup: now and then, to see that they are
        choices["num_assistant_tokens"] = lambda: rng.choice([1, 2, 5, 8, 10, 10, 11, 64])
        choices["max_ngram_size"] = lambda: rng.choice([1, 2, 3, 32, 64])
    return {name: make() for name, make in choices.items() if maybe(rng, 0.25)}


def random_body(rng: random.Random, context_length: int, prompt_lookup: bool) -> tuple[str, dict[str, Any]]:
    """(``chat`` or ``completion``, a request body)."""
    kind = rng.choice(["chat", "completion"])
    max_tokens = rng.choice([1, 2, 3, 5, 8, 16, 32, 64])
    body: dict[str, Any] = {"model": "fuzz", "max_tokens": max_tokens, **sampling_fields(rng, prompt_lookup)}
    if maybe(rng, 0.3):
        body["min_tokens"] = rng.choice([1, max_tokens, max_tokens + 1])
    text = rng.choice(TEXTS)
    if kind == "chat":
        body["messages"] = [{"role": "user", "content": text}]
        if maybe(rng, 0.3):
            body["logprobs"] = True
        if maybe(rng, 0.3):
            body["response_format"] = random_response_format(rng)
        elif maybe(rng, 0.3):
            name, value = random_constraint(rng)
            body[name] = value
        elif maybe(rng, 0.25):
            body["tools"] = [{"type": "function", "function": {"name": f"f{i}", "parameters": random_schema(rng)}}
                             for i in range(rng.randint(1, 3))]
            body["tool_choice"] = rng.choice(["auto", "required", "none", {"type": "function",
                                                                             "function": {"name": "f0"}}])
            body["parallel_tool_calls"] = rng.choice([True, False])
        return kind, body
    if maybe(rng, 0.05):  # the prompt fills the context but for the answer
        body["prompt"] = [rng.randrange(49152) for _ in range(context_length - max_tokens)]
    elif maybe(rng, 0.3):
        body["prompt"] = [rng.choice([0, 1, 2, 49151, rng.randrange(49152)]) for _ in range(rng.randint(1, 64))]
    else:
        body["prompt"] = text or "x"
    if maybe(rng, 0.3):
        body["logprobs"] = 0
    if maybe(rng, 0.2):
        body["best_of"] = rng.choice([1, 2, 5, 20, 21])
    if maybe(rng, 0.3):
        body["response_format"] = random_response_format(rng)
    elif maybe(rng, 0.3):
        name, value = random_constraint(rng)
        body[name] = value
    return kind, body


GRAMMARS = ['root ::= "yes" | "no"', 'root ::= [a-z]+ "." ', 'root ::= item ("," item){0,3}\nitem ::= [0-9]+',
            'root ::= ( "a" | "b" )* "c"', 'root ::= "\\u00e9" [\\x41-\\x5a]{2}', 'root ::= ""', 'root ::= ()',
            'root ::= []', 'root ::= [z-a]', 'root ::= foo', 'root ::= "a" |', "root ::= 'a'", 'x ::= "a"',
            'root ::= "a"{3,2}', 'root ::= "a"{,3}', 'root ::= "\\/"', 'root ::= [\\d]', 'root ::= "a" (= "b")',
            'root ::= "a"{20000}', "root ::= " + "(" * 70 + '"a"' + ")" * 70, 'root ::= "a"\nroot ::= "b"']


def random_constraint(rng: random.Random) -> tuple[str, Any]:
    """A vLLM ``structured_outputs`` (or legacy ``guided_*``) field and value, valid or not."""
    kind = rng.choice(["regex", "grammar", "choice", "structural_tag", "json"])
    if kind == "regex":
        value: Any = rng.choice([*PATTERNS, "\\bword\\b", "a{,3}", "a|", "|a", "[]a]", "(a)\\1", "\\p{L}"])
    elif kind == "grammar":
        value = rng.choice(GRAMMARS)
    elif kind == "choice":
        value = rng.choice([["yes", "no"], ["✓"], ["a" * 200, "b"], ['"quoted"\n', "\\"], [""], []])
    elif kind == "structural_tag":
        content = rng.choice([{"type": "regex", "pattern": rng.choice(PATTERNS)},
                              {"type": "grammar", "grammar": rng.choice(GRAMMARS)},
                              {"type": "json_schema", "json_schema": random_schema(rng)},
                              {"type": "const_string", "value": "ok"}, {"type": "any_text"}])
        value = rng.choice([
            {"type": "structural_tag", "format": content},
            {"type": "structural_tag", "format": {"type": "triggered_tags", "triggers": ["<a"], "tags": [
                {"begin": rng.choice(["<a>", "<b>"]), "content": content, "end": "</a>"}]}},
            {"type": "structural_tag", "structures": [{"begin": "<f>", "schema": random_schema(rng), "end": "</f>"}],
             "triggers": ["<f"]}])
    else:
        value = random_schema(rng)
    if maybe(rng, 0.3) and kind in ("regex", "grammar", "choice", "json"):
        return f"guided_{kind}", value
    return "structured_outputs", {kind: value}


def random_response_format(rng: random.Random) -> dict[str, Any]:
    if maybe(rng, 0.2):
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": "fuzz", "schema": random_schema(rng)}}


# --- running cases ---------------------------------------------------------------------------------------------


@dataclass
class Case:
    number: int
    kind: str
    body: dict[str, Any]

    def show(self) -> str:
        text = json.dumps(self.body)
        return f"case {self.number} ({self.kind}): {text if len(text) < 1500 else text[:1500] + '...'}"


@dataclass
class Report:
    """What the cases came to."""

    cases: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    served: int = 0
    answers: int = 0
    tokens: int = 0
    findings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        refused = ", ".join(f"{param} {count}" for param, count in self.refused.most_common())
        lines = [f"{self.cases} cases in {self.seconds:.0f} s: {self.served} served ({self.answers} answers, "
                 f"{self.tokens} tokens), {sum(self.refused.values())} refused ({refused or 'none'}), "
                 f"{len(self.findings)} findings"]
        return "\n".join([*lines, *(f"FINDING {finding}" for finding in self.findings)])


class EngineUnderFuzz:
    """A real engine, opened as the server opens it (the LLM graph's resource), and the server's validation."""

    def __init__(self, model: Path, prompt_lookup: bool, step_timeout: float = 30) -> None:
        plugin_config = {"prompt_lookup": True} if prompt_lookup else {}
        self.options = LLMCalculatorOptions(models_path=str(model), plugin_config=plugin_config,
                                            engine_step_timeout=step_timeout)
        self.resource = LLMEngine()
        self.name = "prompt_lookup" if prompt_lookup else "plain"

    async def __aenter__(self) -> EngineUnderFuzz:
        context = ResourceContext("llm", self.options, {}, Path.cwd())
        await self.resource.open(context)
        self.engine: EngineClient = context.outputs["ENGINE"]
        self.tokenizer: TextTokenizer = context.outputs["TOKENIZER"]
        self.limits: GenerationLimits = context.outputs["LIMITS"]
        self.parsers: ModelParsers = context.outputs["PARSERS"]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.resource.close()

    def plan(self, case: Case) -> Prompt:
        """The server's validation: a :class:`RequestError` for what it refuses."""
        schema = ChatCompletionRequest if case.kind == "chat" else CompletionRequest
        return engine_prompt(completion_body(schema, case.body), self.tokenizer, self.limits, self.parsers)

    async def recover(self, starts: int, problem: str | None, timeout: float = 180) -> None:
        """After a failure: wait for the engine to be restarted (it exits after a failed step) and ready."""
        deadline = time.monotonic() + timeout
        dying = problem is not None and "engine step failed" in problem
        while not self.engine.ready or (dying and self.engine.starts == starts):
            if time.monotonic() > deadline:
                raise RuntimeError("the engine did not come back after a failure")
            await asyncio.sleep(0.1)

    async def run(self, case: Case, prompt: Prompt, timeout: float) -> tuple[int, int, str | None]:
        """(answers, tokens, what went wrong or ``None``)."""
        params = [answer_params(prompt, index) for index in range(max(prompt.n, prompt.best_of))]
        requests = [self.engine.submit(prompt.token_ids, p) for p in params]

        async def drain(request: Any, limit: int) -> tuple[int, str | None]:
            tokens = 0
            async for delta in request:
                tokens += len(delta.token_ids)
                if delta.error is not None:
                    return tokens, f"{type(delta.error).__name__}: {delta.error}"
            if tokens > limit:
                return tokens, f"{tokens} tokens, above max_tokens {limit}"
            return tokens, None

        try:
            results = await asyncio.wait_for(asyncio.gather(*(drain(r, p.max_new_tokens)
                                                               for r, p in zip(requests, params, strict=True))),
                                             timeout)
        except asyncio.TimeoutError:  # not the builtin TimeoutError on Python 3.10
            for request in requests:
                request.abort()
            return len(requests), 0, f"not finished within {timeout:.0f} s"
        problems = [problem for _, problem in results if problem]
        return len(results), sum(tokens for tokens, _ in results), problems[0] if problems else None


async def fuzz(target: EngineUnderFuzz, cases: int, seed: int, group: int = 4, case_timeout: float = 600,
               log: Callable[[str], None] = lambda _: None) -> Report:
    """Run ``cases`` seeded cases against ``target``, ``group`` at a time."""
    rng = random.Random(seed)
    report = Report()
    started = time.monotonic()
    pending: list[tuple[Case, Prompt]] = []
    for number in range(cases):
        case = Case(number, *random_body(rng, target.limits.context_length, target.limits.prompt_lookup))
        report.cases += 1
        try:
            prompt = target.plan(case)
        except RequestError as error:
            report.refused[error.param or error.code or "?"] += 1
            continue
        pending.append((case, prompt))
        if len(pending) == group or number == cases - 1:
            await run_group(target, pending, report, case_timeout, log)
            pending = []
    if pending:
        await run_group(target, pending, report, case_timeout, log)
    report.seconds = time.monotonic() - started
    return report


async def run_group(target: EngineUnderFuzz, group: list[tuple[Case, Prompt]], report: Report, timeout: float,
                    log: Callable[[str], None]) -> None:
    starts = target.engine.starts
    results = await asyncio.gather(*(target.run(case, prompt, timeout) for case, prompt in group))
    problems = [problem for _, _, problem in results if problem]
    if problems or target.engine.starts != starts:
        await target.recover(starts, problems[0] if problems else None)
    if (problems or target.engine.starts != starts) and len(group) > 1:  # which one was it? each again, alone
        for one in group:
            await run_group(target, [one], report, timeout, log)
        return
    for (case, _), (answers, tokens, problem) in zip(group, results, strict=True):
        if problem or target.engine.starts != starts:
            restarted = " (the engine restarted)" if target.engine.starts != starts else ""
            report.findings.append(f"{problem}{restarted}: {case.show()}")
            log(report.findings[-1])
        else:
            report.served += 1
            report.answers += answers
            report.tokens += tokens


def main(argv: list[str] | None = None) -> int:
    from ovserve.store.fetch import DEFAULT_MODEL, pull

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--engine", choices=("plain", "prompt_lookup"), default="plain")
    parser.add_argument("--group", type=int, default=4, help="cases run together (sharing engine steps)")
    parser.add_argument("--model", type=Path, default=None)
    args = parser.parse_args(argv)

    async def go() -> Report:
        model = args.model or pull(DEFAULT_MODEL, quiet=True)
        async with EngineUnderFuzz(model, args.engine == "prompt_lookup") as target:
            return await fuzz(target, args.cases, args.seed, args.group, log=lambda line: print(line, flush=True))

    report = asyncio.run(go())
    print(f"engine {args.engine}, seed {args.seed}: {report.summary()}")
    return 1 if report.findings else 0


if __name__ == "__main__":
    sys.exit(main())
