"""Models on disk, everything that happens before a model is served: the store folder and the packaged default
models (``fetch``), what is in the store and how a model reference becomes a path (``catalog``), pulls from
Hugging Face (``hub``), and conversion to OpenVINO IR (``gguf_export``, ``hf_export``, ``bert_export``).

Nothing here runs while requests are served; the engines (``ovserve.engine``) load what this package prepared.
"""
