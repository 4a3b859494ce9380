"""Cross-encoder rerank as a graph: the ``RerankModel`` resource (the reranker's engine process and, here, its
tokenizer) and the ``RerankCalculator`` node (Cohere's ``/rerank`` and vLLM's ``/score``). ``graphs/rerank.pbtxt``
wires them; OVMS's ``RerankCalculatorOV`` node (``rerank_calculator_ov.pbtxt``) is the same as a subgraph."""
