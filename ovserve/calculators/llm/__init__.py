"""The OpenAI-compatible LLM pipeline: deserialize → tokenize → generate → score → detokenize → parse reasoning →
parse tools → serialize.

``graphs/llm.pbtxt`` wires these eight calculators and the ``LLMEngine`` resource; the OVMS node
``HttpLLMCalculator`` (``http_llm_calculator.pbtxt``) is the same pipeline as a subgraph.
"""

from ovserve.calculators.llm.messages_api import MessagesCountRequest, MessagesRequest
from ovserve.calculators.llm.responses_api import ResponsesRequest
from ovserve.calculators.llm.schema import ChatCompletionRequest, CompletionRequest
from ovserve.calculators.llm.tokenize_endpoint import DetokenizeRequest, TokenizeRequest
from ovserve.endpoints import Endpoint

_TEXT = ("text_generation",)
#: The endpoints the LLM graph answers; /tokenize and /detokenize are vLLM's, at the root too.
ENDPOINTS = (
    Endpoint("/chat/completions", _TEXT, ChatCompletionRequest),
    Endpoint("/completions", _TEXT, CompletionRequest),
    Endpoint("/responses", _TEXT, ResponsesRequest),
    Endpoint("/messages", _TEXT, MessagesRequest),
    Endpoint("/messages/count_tokens", _TEXT, MessagesCountRequest),
    Endpoint("/tokenize", _TEXT, TokenizeRequest, any_model=True, also_at=("/tokenize",)),
    Endpoint("/detokenize", _TEXT, DetokenizeRequest, any_model=True, also_at=("/detokenize",)),
)
