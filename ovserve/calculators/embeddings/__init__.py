"""OpenAI embeddings as a graph: the ``EmbeddingsModel`` resource (an encoder on the OpenVINO runtime, with
dynamic batching) and the ``EmbeddingsCalculator`` node (request in, response out). ``graphs/embeddings.pbtxt``
wires them; OVMS's ``EmbeddingsCalculatorOV`` node (``embeddings_calculator_ov.pbtxt``) is the same as a subgraph.
"""

from ovserve.calculators.embeddings.schema import EmbeddingRequest
from ovserve.endpoints import Endpoint

#: The embeddings graph's endpoint (rerank and score on embedding models are declared with rerank's).
ENDPOINTS = (Endpoint("/embeddings", ("embeddings",), EmbeddingRequest),)
