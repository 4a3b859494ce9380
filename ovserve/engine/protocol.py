"""What crosses between the HTTP process and an engine process: the framing (a 4-byte little-endian length and a
pickle; both ends are our own processes), the request settings (:class:`SamplingParams`) and what the engine
reports about itself (:class:`EngineInfo`). The messages themselves are in :mod:`ovserve.engine.messages`.
"""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass
from typing import Any, Literal

HEADER = struct.Struct("<I")

#: How a request ended: ``stop`` (EOS or a stop string), ``length`` (token limit), ``abort`` (cancelled),
#: or ``error: <message>``.
FINISH_STOP: Literal["stop"] = "stop"
FINISH_LENGTH: Literal["length"] = "length"
FINISH_ABORT: Literal["abort"] = "abort"


@dataclass(frozen=True, slots=True)
class TaggedCalls:
    """An answer held to tool calls in a model family's own format by constrained decoding: at least one
    call, each ``begin`` + JSON valid for ``schema`` + ``end``, ``separator`` between calls, and only one
    unless ``several``."""

    begin: str
    schema: str
    end: str
    separator: str = ""
    several: bool = False
    #: Free text until the model writes this (the start of ``begin``), then calls as above: ``tool_choice`` ``auto``
    #: with OVMS's ``enable_tool_guided_generation``. Empty: the answer is calls from its start.
    trigger: str = ""

    def grammar(self) -> Any:
        import openvino_genai

        config = openvino_genai.StructuredOutputConfig
        tag = config.Tag(self.begin, config.JSONSchema(self.schema), self.end)
        if self.trigger:
            return config(compound_grammar=config.TriggeredTags([self.trigger], [tag], at_least_one=False,
                                                                stop_after_first=not self.several))
        return config(compound_grammar=config.TagsWithSeparator([tag], self.separator, at_least_one=True,
                                                                stop_after_first=not self.several))


@dataclass(frozen=True, slots=True)
class OutputGrammar:
    """Text the answer must match, enforced by constrained decoding: a ``regex``, an ``ebnf`` grammar (XGrammar's
    EBNF), a ``structural_tag`` (XGrammar's JSON form) or a ``choice`` of strings (``value``: a JSON list)."""

    kind: Literal["regex", "ebnf", "structural_tag", "choice"]
    value: str

    def config(self) -> Any:
        """The engine's ``StructuredOutputConfig`` (built in the engine process)."""
        import json

        import openvino_genai

        config = openvino_genai.StructuredOutputConfig
        if self.kind == "regex":
            return config(regex=self.value)
        if self.kind == "ebnf":
            return config(grammar=self.value)
        if self.kind == "structural_tag":
            return config(structural_tags_config=self.value)
        choices = [config.ConstString(choice) for choice in json.loads(self.value)]
        return config(compound_grammar=config.Union(choices) if len(choices) > 1 else choices[0])


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Generation settings of one request, in engine terms."""

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    #: Sample only from the ``top_k`` most likely tokens; ``None`` or 0: from all of them.
    top_k: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    #: Drop tokens less likely than ``min_p`` times the most likely one (0: off).
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    min_new_tokens: int = 0
    stop_token_ids: tuple[int, ...] = ()
    #: A JSON Schema (as text) the output must follow, enforced by constrained decoding.
    json_schema: str | None = None
    #: Tool calls in a model family's format the output must be, enforced by constrained decoding.
    tool_calls: TaggedCalls | None = None
    #: A grammar the output must match (a regex, EBNF, a structural tag or a choice), by constrained decoding.
    grammar: OutputGrammar | None = None
    #: Report each generated token's log-probability.
    logprobs: bool = False
    #: Prompt lookup decoding (an engine loaded with ``prompt_lookup``): tokens proposed from the prompt per step
    #: and the longest n-gram matched to find them; 0 for engines without it.
    num_assistant_tokens: int = 0
    max_ngram_size: int = 0
    #: Speculative decoding (an engine loaded with a draft model): the draft proposes tokens while it is at least this
    #: confident, instead of ``num_assistant_tokens`` a step; 0: not set. The engine needs exactly one of the two.
    assistant_confidence_threshold: float = 0.0

    def check(self) -> None:
        """Raise ``ValueError`` with the engine's own reason if it would refuse these settings (so that the
        request is refused before it reaches the engine). Zero new tokens never reach it (echo alone)."""
        if self.max_new_tokens == 0:
            return
        try:
            self.to_generation_config().validate()
        except (RuntimeError, TypeError, OverflowError) as error:
            raise ValueError(str(error).strip().splitlines()[-1]) from None

    def to_generation_config(self) -> Any:
        """An ``openvino_genai.GenerationConfig`` (built in the engine process)."""
        import openvino_genai

        config = openvino_genai.GenerationConfig()
        config.max_new_tokens = self.max_new_tokens
        config.ignore_eos = self.ignore_eos
        if self.temperature > 0:
            config.do_sample = True
            config.temperature = self.temperature
            config.top_p = self.top_p
            if self.top_k:
                config.top_k = self.top_k
        else:
            config.do_sample = False
        config.repetition_penalty = self.repetition_penalty
        config.presence_penalty = self.presence_penalty
        config.frequency_penalty = self.frequency_penalty
        config.min_new_tokens = self.min_new_tokens
        if self.min_p and self.temperature > 0:
            config.min_p = self.min_p
        if self.stop_token_ids:
            config.stop_token_ids = set(self.stop_token_ids)
        if self.logprobs:
            config.logprobs = 1  # 0 gives 0.0 for every token
        if self.json_schema is not None:
            config.structured_output_config = openvino_genai.StructuredOutputConfig(json_schema=self.json_schema)
        elif self.tool_calls is not None:
            config.structured_output_config = self.tool_calls.grammar()
        elif self.grammar is not None:
            config.structured_output_config = self.grammar.config()
        if self.num_assistant_tokens:
            config.num_assistant_tokens = self.num_assistant_tokens
            if self.max_ngram_size:
                config.max_ngram_size = self.max_ngram_size
        if self.assistant_confidence_threshold:
            config.assistant_confidence_threshold = self.assistant_confidence_threshold
        if self.seed is not None:
            config.rng_seed = self.seed % (1 << 64)  # OpenAI seeds are any integer; the engine's are unsigned
        if self.stop:
            # The engine stops on them; the detokenizer cuts the text exactly where they start.
            config.stop_strings = set(self.stop)
            config.include_stop_str_in_output = True
        return config


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """What the engine reports once its model is loaded."""

    device: str
    load_seconds: float
    pid: int


def encode_frame(message: tuple[Any, ...]) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


def decode_frames(buffer: bytearray) -> list[tuple[Any, ...]]:
    """Take every complete frame off the front of ``buffer`` (which keeps any partial rest)."""
    messages = []
    offset = 0
    while len(buffer) - offset >= HEADER.size:
        (length,) = HEADER.unpack_from(buffer, offset)
        end = offset + HEADER.size + length
        if end > len(buffer):
            break
        messages.append(pickle.loads(buffer[offset + HEADER.size:end]))
        offset = end
    del buffer[:offset]
    return messages
