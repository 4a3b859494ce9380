"""``GET /tokenizer_info``: what a client needs to tokenize as the served model does (vLLM's endpoint).

lm-evaluation-harness's remote tokenizer asks the server's root for it, reads ``eos_token`` (and ``bos_token``,
``pad_token``, ``chat_template``), then tokenizes with ``POST /tokenize``. vLLM answers with the Hugging Face
tokenizer's settings; ovserve answers with what the model's OpenVINO tokenizer knows.
"""

from __future__ import annotations

from typing import Any

from ovserve.calculators.llm.types import GenerationLimits
from ovserve.engine.tokenizer import TextTokenizer
from ovserve.errors import RequestError
from ovserve.server.servables import Servable


def tokenizer_info(servable: Servable) -> dict[str, Any]:
    """The special tokens, the context length, the vocabulary size and the chat template of ``servable``'s
    model; a 400 for a model without a text tokenizer (an embedding model)."""
    packets = servable.graph.side_packets.values()
    tokenizer = next((value for value in packets if isinstance(value, TextTokenizer)), None)
    if tokenizer is None:
        raise RequestError(f"the model '{servable.name}' has no text generation tokenizer: /tokenizer_info is for "
                           f"text generation models", param="model", code="unsupported_model")
    limits = next((value for value in packets if isinstance(value, GenerationLimits)), None)
    info: dict[str, Any] = {"tokenizer_class": "openvino_genai.Tokenizer"}
    for name, token in tokenizer.special_tokens().items():
        info[f"{name}_token"], info[f"{name}_token_id"] = token if token is not None else (None, None)
    info["model_max_length"] = limits.context_length if limits is not None else None
    info["vocab_size"] = tokenizer.vocab_size or None
    if tokenizer.chat_template:
        info["chat_template"] = tokenizer.chat_template
    return info
