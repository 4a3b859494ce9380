"""What ``ovserve serve`` serves: the graphs and their options for ``--config``, a model named on the command line,
or the default models, each model resolved (and fetched into the store) first; and ``--pull``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ovserve.engine.scoring_model import prepare_scoring
from ovserve.graphs import graph_path
from ovserve.server.ovms_config import load_ovms_config
from ovserve.server.servables import ServableSpec
from ovserve.server.serve_flags import ENGINE_FLAGS
from ovserve.store.catalog import check_task, model_task, record_task, resolve_model
from ovserve.store.fetch import DEFAULT_EMBEDDING_MODEL, ModelFetchError

#: The node of ``graphs/llm.pbtxt`` whose options the command line sets.
ENGINE_NODE = "engine"

#: The graph each task is served with, and the node of it that ``models_path`` goes to.
TASK_GRAPHS = {"text_generation": ("llm.pbtxt", ENGINE_NODE), "embeddings": ("embeddings.pbtxt", "encoder"),
               "speech2text": ("speech2text.pbtxt", "whisper"), "text2speech": ("text2speech.pbtxt", "speech"),
               "rerank": ("rerank.pbtxt", "reranker"), "image_generation": ("image_generation.pbtxt", "images")}

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
    draft = overrides.get("draft_models_path")
    if draft and Path(draft).expanduser().exists():  # a path from the working directory; else a model in the store
        overrides["draft_models_path"] = str(Path(draft).expanduser().resolve())
    if draft and getattr(args, "enable_prefix_caching", None) is None:
        overrides["enable_prefix_caching"] = False  # the engine cannot have both (engine_options.refuse_with_draft)
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
    if args.device:  # OVMS's image generation node names it device; the others target_device
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
