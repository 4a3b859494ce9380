"""The OpenAI-compatible LLM pipeline: deserialize → tokenize → generate → detokenize → parse reasoning →
parse tools → serialize.

``graphs/llm.pbtxt`` wires these seven calculators and the ``LLMEngine`` resource; the OVMS node
``HttpLLMCalculator`` (``http_llm_calculator.pbtxt``) is the same pipeline as a subgraph.
"""
