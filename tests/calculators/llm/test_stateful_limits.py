"""What the stateful pipeline (pipeline_type LM, NPU) cannot take is refused by the tokenize node, naming the field,
before its engine sees the request; NPU's MAX_PROMPT_LEN bounds the prompt as OVMS bounds it. (NPU is not on this
machine: these use the limits an NPU-served model gets.)"""

import pytest

from ovserve.calculators.llm.tokenize import TokenizerCalculator
from ovserve.calculators.llm.types import GenerationLimits, StatefulLimits
from ovserve.framework.errors import CalculatorError
from ovserve.testing import run_calculator
from tests.calculators.llm.fakes import chat_request, completion_request, fake_tokenizer

#: A model on the stateful pipeline on CPU: no bound on the prompt but the context.
ON_CPU = StatefulLimits()


async def tokenize(request, stateful=ON_CPU):
    side = {"TOKENIZER": fake_tokenizer(), "LIMITS": GenerationLimits(2000, stateful=stateful)}
    (prompt,) = (await run_calculator(TokenizerCalculator, {"REQUEST": [request]}, side_packets=side))["PROMPT"]
    return prompt


async def refused(request, stateful=ON_CPU):
    with pytest.raises(CalculatorError) as caught:
        await tokenize(request, stateful)
    return caught.value.cause


async def test_a_prompt_up_to_max_prompt_len_passes_and_stop_strings_are_left_to_the_detokenizer():
    prompt = await tokenize(completion_request(prompt="x" * 16, max_tokens=500, stop=["y"]), StatefulLimits("NPU", 16))
    assert prompt.token_ids.size == 16 and prompt.params.max_new_tokens == 500 and prompt.params.stop == ()


@pytest.mark.parametrize(("request_", "param"), [
    (completion_request(prompt="x" * 17), "prompt"),
    (chat_request(messages=[{"role": "user", "content": "x" * 17}]), "messages"),
])
async def test_a_prompt_over_max_prompt_len_is_a_400_naming_it(request_, param):
    error = await refused(request_, StatefulLimits("NPU", 16))
    assert error.status == 400 and error.param == param
    assert "above the 16 this model was compiled for on NPU (MAX_PROMPT_LEN in plugin_config)" in error.message


@pytest.mark.parametrize(("request_", "param"), [
    (chat_request(n=3), "n"),
    (chat_request(logprobs=True), "logprobs"),
    (completion_request(prompt="ab", best_of=2), "best_of"),
    (completion_request(prompt="ab", logprobs=1), "logprobs"),
    (completion_request(prompt=["ab", "cd"]), "prompt"),
])
async def test_what_one_request_at_a_time_cannot_do_is_refused_by_name(request_, param):
    error = await refused(request_)
    assert error.status == 400 and error.param == param and error.code == "unsupported_parameter"
    assert "stateful pipeline" in error.message


async def test_echo_alone_and_the_batching_engine_s_requests_pass():
    echoed = await tokenize(completion_request(prompt="ab", max_tokens=0, echo=True, logprobs=0))
    assert echoed.params.max_new_tokens == 0
    side = {"TOKENIZER": fake_tokenizer(), "LIMITS": GenerationLimits(2000)}
    (batched,) = (await run_calculator(TokenizerCalculator, {"REQUEST": [chat_request(n=3, logprobs=True)]},
                                       side_packets=side))["PROMPT"]
    assert batched.n == 3 and batched.params.logprobs
