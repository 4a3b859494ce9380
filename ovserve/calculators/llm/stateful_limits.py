"""What the stateful pipeline (``pipeline_type: LM``, NPU) cannot do, refused with a 400 naming the field before its
engine sees the request (:mod:`ovserve.engine.stateful_kind` says how each was found)."""

from __future__ import annotations

from ovserve.calculators.llm.schema import ChatCompletionRequest, CompletionRequest
from ovserve.calculators.llm.types import StatefulLimits
from ovserve.engine.devices import MAX_PROMPT_LEN, is_npu
from ovserve.engine.protocol import SamplingParams
from ovserve.errors import RequestError

#: How the refusals end: where the request would be served.
SERVED_ELSEWHERE = ("this model runs on the stateful pipeline, one request at a time (pipeline_type LM, as OVMS serves "
                    "NPU); the continuous-batching engine (pipeline_type LM_CB) has it")


def check_stateful_request(body: ChatCompletionRequest | CompletionRequest, prompt_sizes: list[int],
                           params: SamplingParams, limits: StatefulLimits, images: int = 0) -> None:
    """Refuse (a 400 naming the field) what the stateful pipeline cannot do for ``body``, whose prompts have
    ``prompt_sizes`` tokens and whose first prompt's engine settings are ``params``: several answers or prompts
    (each would wait for the one before), log-probabilities (it reports one score for the whole answer), and a
    prompt longer than the device takes (NPU's ``MAX_PROMPT_LEN``), and more than one image (of ``images``) on NPU,
    as OVMS refuses them."""
    best_of = getattr(body, "best_of", None) or 1
    if body.n > 1 or best_of > 1:
        param = "n" if body.n > 1 else "best_of"
        raise RequestError(f"'{param}' is {max(body.n, best_of)}; one answer per request: {SERVED_ELSEWHERE}",
                           param=param, code="unsupported_parameter")
    if len(prompt_sizes) > 1:
        raise RequestError(f"'prompt' holds {len(prompt_sizes)} prompts; one per request: {SERVED_ELSEWHERE}",
                           param="prompt", code="unsupported_parameter")
    if params.logprobs and params.max_new_tokens > 0:
        raise RequestError(f"'logprobs' cannot be computed: the stateful pipeline reports one score for the whole "
                           f"answer, not each token's; {SERVED_ELSEWHERE}", param="logprobs",
                           code="unsupported_parameter")
    if images > 1 and is_npu(limits.device):
        raise RequestError(f"the messages hold {images} images; a vision model on NPU takes one per request (as "
                           f"OVMS serves it)", param="messages", code="unsupported_parameter")
    limit = limits.max_prompt_tokens
    if limit is not None and prompt_sizes and prompt_sizes[0] > limit:
        param = "messages" if isinstance(body, ChatCompletionRequest) else "prompt"
        raise RequestError(f"the prompt has {prompt_sizes[0]} tokens, above the {limit} this model was compiled for on "
                           f"{limits.device} ({MAX_PROMPT_LEN} in plugin_config): send a shorter prompt",
                           param=param, code="invalid_value")
