"""The calculators that ship with ovserve (installed as the package ``ovserve.calculators``).

Every module here is registered at start-up: ``core`` (generic building blocks), ``llm`` (the
OpenAI-compatible LLM pipeline) and ``examples`` (the small calculators the README walks through).
Subgraphs (``*.pbtxt`` with a ``type:``) next to the modules are registered too.
"""
