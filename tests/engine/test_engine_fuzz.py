"""The engine fuzz, bounded: seeded random requests through the server's validation to a real engine, plain and with
prompt lookup; nothing the validation lets through may fail an engine step. ``python -m tests.engine.engine_fuzz``
runs longer campaigns (docs/reliability.md has their results)."""

import pytest

from ovserve.errors import RequestError
from tests.engine.engine_fuzz import Case, EngineUnderFuzz, fuzz

pytestmark = pytest.mark.slow

#: Requests that failed an engine step (and restarted the engine for everyone) before validation refused them.
FOUND = [
    ("chat", {"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_schema", "json_schema": {
        "name": "n", "schema": {"type": "integer", "minimum": -1e40, "maximum": 1e40}}}},
     "response_format.json_schema.schema"),
    ("chat", {"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_schema", "json_schema": {
        "name": "n", "schema": {"type": "integer", "minimum": 1, "exclusiveMaximum": 1}}}},
     "response_format.json_schema.schema"),
    ("chat", {"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_schema", "json_schema": {
        "name": "o", "schema": {"type": "object", "properties": {"a": False}, "required": ["a"]}}}},
     "response_format.json_schema.schema"),
    ("chat", {"messages": [{"role": "user", "content": "Tell me a story"}], "n": 20, "num_assistant_tokens": 64},
     "num_assistant_tokens"),
    # grammars the engine's XGrammar fails to compile, inside the step (measured one by one)
    ("chat", {"messages": [{"role": "user", "content": "hi"}], "structured_outputs": {"regex": "[a-"}},
     "structured_outputs.regex"),
    ("completion", {"prompt": "hi", "guided_regex": "\\bword\\b"}, "guided_regex"),
    ("chat", {"messages": [{"role": "user", "content": "hi"}], "structured_outputs": {"grammar": "root ::= foo"}},
     "structured_outputs.grammar"),
    ("chat", {"messages": [{"role": "user", "content": "hi"}], "response_format": {
        "type": "structural_tag", "format": {"type": "triggered_tags", "triggers": ["<a"], "tags": [
            {"begin": "<b>", "content": {"type": "any_text"}, "end": "</b>"}]}}}, "response_format.format.tags[0].begin"),
]


@pytest.mark.parametrize("engine", ["plain", "prompt_lookup"])
async def test_a_seeded_fuzz_fails_no_engine_step_and_what_failed_before_is_refused(default_model, engine):
    async with EngineUnderFuzz(default_model, prompt_lookup=engine == "prompt_lookup") as target:
        for kind, body, param in FOUND:
            if param == "num_assistant_tokens" and engine == "plain":
                continue
            with pytest.raises(RequestError) as refused:
                target.plan(Case(0, kind, {"model": "m", "max_tokens": 64, **body}))
            assert refused.value.param == param

        report = await fuzz(target, cases=40, seed=7 if engine == "prompt_lookup" else 5, group=4)
        print(report.summary())
        assert not report.findings, report.summary()
        assert report.served >= 10 and report.refused  # it reached the engine, and the validation
        assert target.engine.starts == 1  # the engine never restarted
