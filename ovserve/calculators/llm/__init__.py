"""The OpenAI-compatible LLM pipeline: deserialize → tokenize → generate → score → detokenize → parse reasoning →
parse tools → serialize.

``graphs/llm.pbtxt`` wires these eight calculators and the ``LLMEngine`` resource; the OVMS node
``HttpLLMCalculator`` (``http_llm_calculator.pbtxt``) is the same pipeline as a subgraph.
"""
