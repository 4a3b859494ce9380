"""What ovserve does with each OpenAI request field it does not simply honour.

The rule: a field that changes the answer is honoured or refused with a 400 that names it; a field
that does not (``user``, ``service_tier``, ...) is accepted and logged, once per field name per
process, as vLLM does; so is a field ovserve does not know. The README's "Request fields" table
says the same for every field.
"""

from __future__ import annotations

import logging
import threading

from pydantic import BaseModel

from ovserve.calculators.llm.schema import ChatCompletionRequest, CompletionRequest
from ovserve.calculators.llm.tools import check_tool_names
from ovserve.errors import RequestError

log = logging.getLogger("ovserve.llm")

#: Accepted and ignored by design: they do not change the answer.
IGNORED_BY_DESIGN = frozenset({"user", "service_tier", "prompt_cache_key", "safety_identifier",
                               "guided_decoding_backend"})

#: vLLM's request extensions that change the answer and that ovserve does not implement: refused by name
#: rather than logged as unknown, since a vLLM client sends them expecting an effect.
VLLM_UNSUPPORTED = ("guided_whitespace_pattern", "bad_words", "allowed_token_ids", "prompt_logprobs",
                    "continue_final_message", "add_generation_prompt", "truncate_prompt_tokens", "use_beam_search",
                    "length_penalty", "spaces_between_special_tokens", "echo", "documents", "mm_processor_kwargs")

#: OVMS's request extensions that change the answer and that ovserve does not implement, with why.
OVMS_UNSUPPORTED: dict[str, str] = {}

#: The most field names logged in all, and named in one log line.
MAX_LOGGED = 1000
MAX_NAMES_A_LINE = 10

_logged: set[str] = set()
_logged_full: list[bool] = []
_logged_lock = threading.Lock()


def refuse(param: str, reason: str) -> RequestError:
    return RequestError(f"'{param}' {reason}", param=param, code="unsupported_parameter")


def refuse_unsupported(body: ChatCompletionRequest | CompletionRequest) -> None:
    """Raise a 400 naming the first field that asks for something ovserve does not do yet, or tools that
    cannot be used as given."""
    if isinstance(body, ChatCompletionRequest):
        check_tool_names(body.callable_tools())
        if body.top_logprobs and not body.logprobs:
            raise RequestError("'top_logprobs' needs 'logprobs': true", param="top_logprobs", code="invalid_value")
    elif body.best_of is not None and body.best_of < body.n:
        raise RequestError(f"'best_of' ({body.best_of}) must not be below n ({body.n})", param="best_of",
                           code="invalid_value")
    for param, active, reason in _unsupported(body):
        if active:
            raise refuse(param, reason)


def _unsupported(body: ChatCompletionRequest | CompletionRequest) -> list[tuple[str, bool, str]]:
    """(field, whether the request sets it to something other than its neutral value, why it is refused)."""
    extra = body.model_extra or {}
    common = [
        *((name, extra.get(name) is not None, "(a vLLM extension) is not supported") for name in VLLM_UNSUPPORTED
          if name in extra),
        *((name, extra.get(name) is not None, why) for name, why in OVMS_UNSUPPORTED.items() if name in extra),
        ("logit_bias", bool(body.logit_bias), "is not supported: the OpenVINO GenAI engine has no logit bias"),
        ("skip_special_tokens", not body.skip_special_tokens, "false is not supported: special tokens are "
                                                              "always left out of the text"),
    ]
    if isinstance(body, CompletionRequest):
        return [
            *common,
            ("best_of", bool(body.best_of and body.best_of > body.n and body.stream),
             "above n cannot be streamed: the best answers are known only once all are complete"),
            ("suffix", bool(body.suffix), "is not supported: this model has no fill-in-the-middle format"),
        ]
    return [
        *common,
        ("response_format", body.response_format is not None and body.response_format.type != "text"
         and bool(body.callable_tools()), "cannot be combined with tools the answer may call"),
        ("structured_outputs", body.structured_outputs is not None and bool(body.callable_tools()),
         "cannot be combined with tools the answer may call"),
        ("functions", bool(body.functions), "are not supported (deprecated by OpenAI in favour of tools)"),
        ("function_call", body.function_call not in (None, "none"), "is not supported (deprecated by OpenAI)"),
        ("verbosity", body.verbosity is not None, "is not supported"),
        ("modalities", body.modalities not in (None, ["text"]),
         "other than ['text'] are not supported by this graph: a voice graph (graphs/voice.pbtxt) answers in speech"),
        ("audio", body.audio is not None, "output is not supported by this graph: a voice graph "
                                           "(graphs/voice.pbtxt) answers in speech"),
        ("prediction", body.prediction is not None, "(predicted outputs) is not supported"),
        ("web_search_options", body.web_search_options is not None, "is not supported"),
        # store: true is taken by the server (the completion is kept as it is sent), or refused there
        ("metadata", bool(body.metadata) and not body.store, "is kept with stored completions: set 'store': true"),
    ]


def log_ignored(body: BaseModel, ignored_by_design: frozenset[str] = IGNORED_BY_DESIGN) -> None:
    """Log, once per name, the request's fields that ovserve accepts without acting on them: in one line per
    request, naming at most :data:`MAX_NAMES_A_LINE` of them; and no more than :data:`MAX_LOGGED` names in all
    (a client that invents field names must not grow the server's memory or its log without end)."""
    by_design = ignored_by_design & body.model_fields_set
    unknown = set(body.model_extra or ())
    with _logged_lock:
        room = MAX_LOGGED - len(_logged)
        new = sorted((by_design | unknown) - _logged)[:max(room, 0)]
        _logged.update(new)
        if not new and room <= 0 and unknown - _logged and not _logged_full:
            _logged_full.append(True)
            log.warning("more unknown request fields are accepted and ignored; %d names were logged, and no more "
                        "will be", MAX_LOGGED)
    if not new:
        return
    named = ", ".join(f"'{name}' ({'does not change the answer' if name in by_design else 'unknown'})"
                      for name in new[:MAX_NAMES_A_LINE])
    more = f" and {len(new) - MAX_NAMES_A_LINE} more" if len(new) > MAX_NAMES_A_LINE else ""
    log.warning("request fields accepted and ignored (each logged once): %s%s", named, more)
