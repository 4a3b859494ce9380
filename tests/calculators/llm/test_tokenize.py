"""Tokenize: chat template or raw prompt, then the request's own conversion to engine settings."""

import json

import pytest

from ovserve.calculators.llm.tokenize import TokenizerCalculator
from ovserve.calculators.llm.types import GenerationLimits, ModelParsers
from ovserve.engine.generation_config import OPENAI_SAMPLING, SamplingDefaults
from ovserve.errors import RequestError
from ovserve.framework.errors import CalculatorError
from ovserve.testing import run_calculator
from tests.calculators.llm.fakes import chat_request, completion_request, fake_tokenizer


async def tokenize(request, context_length=100, max_tokens_limit=None, sampling=OPENAI_SAMPLING, prompt_lookup=False,
                   max_scored_tokens=8192, speculative=False):
    limits = GenerationLimits(context_length, max_tokens_limit, sampling, prompt_lookup=prompt_lookup,
                              max_scored_tokens=max_scored_tokens, speculative=speculative)
    side = {"TOKENIZER": fake_tokenizer(), "LIMITS": limits}
    (prompt,) = (await run_calculator(TokenizerCalculator, {"REQUEST": [request]}, side_packets=side))["PROMPT"]
    return prompt


async def test_chat_messages_go_through_the_chat_template():
    prompt = await tokenize(chat_request(messages=[{"role": "developer", "content": "be brief"},
                                                   {"role": "user", "content": "hi"}]))
    assert bytes(prompt.token_ids.tolist()).decode() == "<system>be brief<user>hi<assistant>"


async def test_without_max_tokens_the_rest_of_the_context_is_allowed():
    prompt = await tokenize(completion_request(prompt="hello"), context_length=100)
    assert prompt.params.max_new_tokens == 95
    prompt = await tokenize(completion_request(prompt="hello"), context_length=100, max_tokens_limit=10)
    assert prompt.params.max_new_tokens == 10


async def test_sampling_fields_reach_the_engine_settings():
    prompt = await tokenize(chat_request(temperature=0, top_p=0.5, seed=3, stop="END", ignore_eos=True,
                                         max_completion_tokens=7))
    params = prompt.params
    assert (params.temperature, params.top_p, params.seed, params.stop, params.ignore_eos, params.max_new_tokens) == (
        0, 0.5, 3, ("END",), True, 7)


async def test_sampling_fields_left_out_come_from_the_models_defaults():
    model = SamplingDefaults(temperature=0.2, top_p=0.9, top_k=40)
    params = (await tokenize(chat_request(), sampling=model)).params
    assert (params.temperature, params.top_p, params.top_k) == (0.2, 0.9, 40)
    params = (await tokenize(chat_request(temperature=1.5, top_p=0.5), sampling=model)).params
    assert (params.temperature, params.top_p, params.top_k) == (1.5, 0.5, 40)
    params = (await tokenize(chat_request())).params
    assert (params.temperature, params.top_p, params.top_k) == (1.0, 1.0, None)


async def test_without_a_seed_each_request_draws_its_own():
    seeds = {(await tokenize(chat_request())).params.seed for _ in range(4)}
    assert None not in seeds and len(seeds) == 4
    assert (await tokenize(chat_request(seed=-5))).params.seed == -5


async def test_token_id_prompts_pass_through():
    prompt = await tokenize(completion_request(prompt=[5, 6, 7]))
    assert prompt.token_ids.tolist() == [5, 6, 7]


async def refused(request, **limits) -> RequestError:
    with pytest.raises(CalculatorError) as caught:
        await tokenize(request, **limits)
    return caught.value.cause


async def test_a_prompt_that_fills_the_context_is_refused_with_both_numbers():
    error = await refused(completion_request(prompt="x" * 120), context_length=100)
    assert error.status == 400 and error.code == "context_length_exceeded"
    assert "100 tokens" in error.message and "120 tokens" in error.message


async def test_max_tokens_beyond_the_context_is_refused_with_the_sum():
    error = await refused(completion_request(prompt="x" * 50, max_tokens=60), context_length=100)
    assert "you requested 110 tokens (50 in the prompt, 60 for the completion)" in error.message


async def test_max_tokens_above_the_servers_limit_is_refused():
    error = await refused(completion_request(prompt="x", max_tokens=60), context_length=100, max_tokens_limit=50)
    assert error.param == "max_tokens" and "limit of 50" in error.message


async def test_the_extra_sampling_fields_reach_the_engine_settings():
    params = (await tokenize(chat_request(top_k=5, min_p=0.1, repetition_penalty=1.3, presence_penalty=0.5,
                                          frequency_penalty=-0.5, min_tokens=4, stop_token_ids=[9, 10],
                                          max_tokens=20))).params
    assert (params.top_k, params.min_p, params.repetition_penalty, params.presence_penalty,
            params.frequency_penalty, params.min_new_tokens, params.stop_token_ids) == (
        5, 0.1, 1.3, 0.5, -0.5, 4, (9, 10))
    assert (await tokenize(chat_request(top_k=-1), sampling=SamplingDefaults(top_k=40))).params.top_k == 0


async def test_chat_template_kwargs_reach_the_template():
    prompt = await tokenize(chat_request(chat_template_kwargs={"enable_thinking": False}))
    assert bytes(prompt.token_ids.tolist()).decode() == "<enable_thinking=False><user>hi<assistant>"


@pytest.mark.parametrize(
    ("request_", "param", "words"),
    [
        (completion_request(prompt=[5, 256, 7]), "prompt", "token id 256, outside this model's vocabulary (0 to 255)"),
        (completion_request(prompt=[-1]), "prompt", "token id -1"),
        (chat_request(stop_token_ids=[1000]), "stop_token_ids", "token id 1000"),
        (chat_request(min_tokens=8, max_tokens=4), "min_tokens", "min_tokens (8) is more than max_tokens (4)"),
    ],
)
async def test_token_ids_outside_the_vocabulary_and_impossible_limits_are_refused(request_, param, words):
    with pytest.raises(CalculatorError) as caught:
        await tokenize(request_)
    error = caught.value.cause
    assert isinstance(error, RequestError) and (error.status, error.param) == (400, param)
    assert words in error.message


WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


async def tokenize_with(request, parsers):
    side = {"TOKENIZER": fake_tokenizer(), "LIMITS": GenerationLimits(100), "PARSERS": parsers}
    (prompt,) = (await run_calculator(TokenizerCalculator, {"REQUEST": [request]}, side_packets=side))["PROMPT"]
    return prompt


async def test_tools_in_the_generic_format_hold_the_answer_to_a_schema_and_a_familys_format_leaves_it_free():
    generic = await tokenize_with(chat_request(tools=[WEATHER], tool_choice="required"), ModelParsers("generic"))
    assert "tool_calls" in generic.params.json_schema
    assert bytes(generic.token_ids.tolist()).decode().startswith("<tool get_weather>")
    hermes = await tokenize_with(chat_request(tools=[WEATHER]), ModelParsers("hermes3"))
    assert hermes.params.json_schema is None
    # A family's format holds nothing to the parameters, so a schema constrained decoding lacks is fine there.
    loose = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "minProperties": 1}}}
    assert (await tokenize_with(chat_request(tools=[loose]), ModelParsers("hermes3"))).params.json_schema is None


@pytest.mark.parametrize(("parser", "begin", "key", "separator"), [
    ("hermes3", "<tool_call>\n", "arguments", "\n"), ("llama3", "", "parameters", "; "), ("phi4", "functools", "arguments", "")])
async def test_a_required_call_in_a_family_format_is_held_to_that_format(parser, begin, key, separator):
    prompt = await tokenize_with(chat_request(tools=[WEATHER], tool_choice="required", parallel_tool_calls=False),
                                 ModelParsers(parser))
    forced = prompt.params.tool_calls
    assert prompt.params.json_schema is None and forced is not None
    assert (forced.begin, forced.separator, forced.several) == (begin, separator, False)
    assert key in json.loads(forced.schema).get("items", json.loads(forced.schema))["properties"]
    prompt.params.check()  # the engine takes the grammar


@pytest.mark.parametrize(("parser", "trigger"), [("hermes3", "<tool_call>"), ("phi4", "functools"), ("llama3", None)])
async def test_tool_guided_generation_holds_an_auto_call_once_its_tag_opens(parser, trigger):
    guided = (await tokenize_with(chat_request(tools=[WEATHER]), ModelParsers(parser, tool_guided=True))).params
    assert (guided.tool_calls.trigger if guided.tool_calls else None) == trigger  # llama3's calls open with no tag
    guided.check()  # the engine takes the grammar
    assert (await tokenize_with(chat_request(tools=[WEATHER]), ModelParsers(parser))).params.tool_calls is None


@pytest.mark.parametrize(
    ("request_", "parsers", "param", "words"),
    [
        (chat_request(tools=[WEATHER], tool_choice="required"), ModelParsers("mistral"), "tool_choice",
         "not supported in the mistral format"),
        (chat_request(tools=[WEATHER], tool_choice="required"), ModelParsers("pythonic"), "tool_choice",
         "not supported in the pythonic format"),
        (chat_request(tools=[WEATHER]), ModelParsers(None), "tools", "does not recognise"),
        (chat_request(tools=[{"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "minProperties": 1}}}]), ModelParsers("generic"), "tools[0].function.parameters",
         "'minProperties'"),
        (chat_request(tools=[WEATHER]), ModelParsers(None, unsupported="gptoss"), "tools",
         "tool_parser 'gptoss' is not implemented"),
    ],
)
async def test_tools_a_model_cannot_take_are_refused(request_, parsers, param, words):
    with pytest.raises(CalculatorError) as caught:
        await tokenize_with(request_, parsers)
    assert caught.value.cause.param == param and words in caught.value.cause.message


async def test_with_prompt_lookup_a_request_gets_ovms_defaults_or_its_own_settings():
    defaults = (await tokenize(chat_request(), prompt_lookup=True)).params
    assert (defaults.num_assistant_tokens, defaults.max_ngram_size) == (5, 3)
    own = (await tokenize(chat_request(num_assistant_tokens=2, max_ngram_size=4), prompt_lookup=True)).params
    assert (own.num_assistant_tokens, own.max_ngram_size) == (2, 4)
    assert (await tokenize(chat_request())).params.num_assistant_tokens == 0  # the engine proposes nothing


@pytest.mark.parametrize("field", ["num_assistant_tokens", "max_ngram_size"])
async def test_prompt_lookup_settings_are_refused_by_an_engine_without_it(field):
    error = await refused(completion_request(prompt="hi", **{field: 3}))
    assert (error.status, error.param) == (400, field)
    assert '"prompt_lookup": true' in error.message


async def test_with_a_draft_model_a_request_gets_5_tokens_a_step_or_its_own_setting():
    assert (await tokenize(chat_request(), speculative=True)).params.num_assistant_tokens == 5
    own = (await tokenize(chat_request(num_assistant_tokens=2), speculative=True)).params
    assert (own.num_assistant_tokens, own.assistant_confidence_threshold) == (2, 0)
    confident = (await tokenize(chat_request(assistant_confidence_threshold=0.4), speculative=True)).params
    assert (confident.num_assistant_tokens, confident.assistant_confidence_threshold) == (0, 0.4)
    assert (await tokenize(chat_request(stop=["END"]), speculative=True)).params.stop == ()  # as with prompt lookup


async def test_with_a_draft_model_both_speculative_settings_or_an_ngram_size_are_refused_by_name():
    both = await refused(chat_request(num_assistant_tokens=2, assistant_confidence_threshold=0.4), speculative=True)
    assert (both.status, both.param) == (400, "num_assistant_tokens")
    assert "'num_assistant_tokens' and 'assistant_confidence_threshold' cannot be given together" in both.message
    ngram = await refused(chat_request(max_ngram_size=3), speculative=True)
    assert (ngram.status, ngram.param) == (400, "max_ngram_size")


@pytest.mark.parametrize(("request_", "param"), [
    (chat_request(logprobs=True, temperature=0.7), "logprobs"),
    (completion_request(prompt="hi", logprobs=0), "logprobs"),  # the default sampling: temperature 1
    (completion_request(prompt="hi", n=1, best_of=3, temperature=0.5), "best_of"),
])
async def test_with_a_draft_model_sampled_log_probabilities_are_refused(request_, param):
    error = await refused(request_, speculative=True)
    assert (error.status, error.param) == (400, param)
    assert "wrong log-probabilities for sampled tokens" in error.message
    greedy = (await tokenize(chat_request(logprobs=True, temperature=0), speculative=True)).params
    assert greedy.logprobs and greedy.num_assistant_tokens == 5


@pytest.mark.parametrize("prompt_lookup", [False, True])
async def test_without_a_draft_model_a_confidence_threshold_is_refused_not_ignored(prompt_lookup):
    error = await refused(chat_request(assistant_confidence_threshold=0.4), prompt_lookup=prompt_lookup)
    assert (error.status, error.param) == (400, "assistant_confidence_threshold")
    assert "not served with a draft model" in error.message


async def test_a_prompt_length_the_eviction_engine_fails_on_is_refused_naming_the_prompt():
    limits = GenerationLimits(100, eviction_gap=(33, 39))
    side = {"TOKENIZER": fake_tokenizer(), "LIMITS": limits}
    with pytest.raises(CalculatorError) as caught:
        await run_calculator(TokenizerCalculator, {"REQUEST": [completion_request(prompt="x" * 35)]},
                             side_packets=side)
    assert (caught.value.cause.status, caught.value.cause.param) == (400, "prompt")
    assert "has 35 tokens" in caught.value.cause.message and "33 to 39" in caught.value.cause.message
    for fits in ("x" * 32, "x" * 40):
        await run_calculator(TokenizerCalculator, {"REQUEST": [completion_request(prompt=fits)]}, side_packets=side)


async def test_with_prompt_lookup_stop_strings_are_left_to_the_detokenizer():
    params = (await tokenize(chat_request(stop=["END"]), prompt_lookup=True)).params
    assert params.stop == ()  # the engine's own check failed its steps with prompt lookup


async def test_a_request_scoring_more_tokens_than_the_limit_is_refused_stating_it():
    # 3 choices x (5 prompt tokens + 10): 45 tokens through the scoring model
    assert (await tokenize(completion_request(prompt="hello", n=3, max_tokens=10, logprobs=2), max_scored_tokens=45))
    error = await refused(completion_request(prompt="hello", n=3, max_tokens=10, logprobs=2), max_scored_tokens=44)
    assert (error.status, error.param) == (400, "logprobs")
    assert "45 tokens scored (3 choices x (5 prompt + 10 max_tokens)), above this server's limit of 44" in error.message
    echo = await refused(completion_request(prompt="hello", max_tokens=0, echo=True, logprobs=0), max_scored_tokens=4)
    assert echo.param == "logprobs"
    chat = await refused(chat_request(logprobs=True, top_logprobs=1, max_tokens=40), max_scored_tokens=30)
    assert chat.param == "top_logprobs"
    # the engine's own log-probabilities cost the scorer nothing
    assert await tokenize(chat_request(logprobs=True, max_tokens=40), max_scored_tokens=30)
