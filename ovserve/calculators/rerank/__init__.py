"""Cross-encoder rerank as a graph: the ``RerankModel`` resource (the reranker's engine process and, here, its
tokenizer) and the ``RerankCalculator`` node (Cohere's ``/rerank`` and vLLM's ``/score``). ``graphs/rerank.pbtxt``
wires them; OVMS's ``RerankCalculatorOV`` node (``rerank_calculator_ov.pbtxt``) is the same as a subgraph."""

from ovserve.calculators.embeddings.rerank import RerankRequest
from ovserve.calculators.rerank.schema import ScoreRequest
from ovserve.endpoints import Endpoint

_RANKERS = ("rerank", "embeddings")
#: Cohere's rerank and vLLM's score, answered by a reranker, else by an embedding model (cosine similarity). vLLM
#: serves both at the root; Cohere's clients post to v1/rerank or v2/rerank under their base_url (the server's root,
#: or /v3 as OVMS's docs set it).
ENDPOINTS = (
    Endpoint("/rerank", _RANKERS, RerankRequest, also_at=("/rerank", "/v2/rerank", "/v3/v1/rerank", "/v3/v2/rerank")),
    Endpoint("/score", _RANKERS, ScoreRequest, also_at=("/score",)),
)
