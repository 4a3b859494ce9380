"""A Hugging Face checkpoint (a local folder or a hub id) as an OpenVINO IR folder, through optimum-intel.

The ``[export]`` extra (``pip install 'ovserve[export]'``) brings optimum-intel, and with it PyTorch; serving
never needs either. The export runs ``optimum-cli export openvino`` in a child process of this interpreter:
the command line is optimum-intel's stable interface, and it holds logic that ``main_export`` alone lacks
(turning ``--weight-format`` into a quantization config, per-model default int4 settings, quantizing in a
temporary folder). The child also keeps PyTorch and the traced model out of the caller's memory.

The folder written holds ``openvino_model.xml/.bin``, ``openvino_tokenizer``/``openvino_detokenizer``
``.xml/.bin``, ``generation_config.json`` and the Hugging Face config and tokenizer files.
"""

from __future__ import annotations

import codecs
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ovserve.engine.generation_config import GENERATION_CONFIG
from ovserve.engine.settings import IR_DETOKENIZER, IR_MODEL, IR_TOKENIZER
from ovserve.store.gguf_export import IR_WEIGHTS

WEIGHT_FORMATS = ("int4", "int8", "fp16")
INSTALL_HINT = "pip install 'ovserve[export]'"
#: The task optimum exports decoder LLMs for: a stateful model with its KV cache, as OpenVINO GenAI serves.
TASK = "text-generation-with-past"
#: The task it exports cross-encoders (rerankers: ``*ForSequenceClassification``) for, as GenAI's rerank takes them.
CLASSIFIER_TASK = "text-classification"
#: A Hugging Face model id: ``org/name``.
HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
#: What the export must write for ``ovserve serve`` (besides generation_config.json).
OUTPUT_FILES = (IR_MODEL, IR_WEIGHTS, IR_TOKENIZER, "openvino_tokenizer.bin", IR_DETOKENIZER,
                "openvino_detokenizer.bin")
_GROUP_SIZE_ERROR = "InvalidGroupSizeError"
#: Failures whose cause the log hides, and what to do.
_HINTS = {"torchvision::nms does not exist": "torchvision does not match the installed torch (a CPU torch beside "
                                             "PyPI's CUDA torchvision?): install both from the same index, or "
                                             "uninstall torchvision (optimum-intel lists it but LLMs do not use it)"}
_OPTIMUM_MODULES = ("optimum.intel", "optimum.exporters.openvino", "optimum.commands.optimum_cli", "torch",
                    "transformers")


class HFExportError(RuntimeError):
    """The checkpoint could not be exported: optimum-intel is missing, the source is wrong, or the export failed."""


def export_checkpoint(source: str | Path, output: Path, weight_format: str = "int4", *,
                      quiet: bool = False) -> Path:
    """Export ``source`` to the new folder ``output`` as OpenVINO IR that ``ovserve serve`` serves.

    ``source`` is a checkpoint folder (with ``config.json``) or, as a ``str``, a Hugging Face id (``org/name``,
    downloaded by optimum into the Hugging Face cache). ``weight_format``: ``int4`` / ``int8`` (weight
    compression by NNCF) or ``fp16``. The folder appears whole or not at all; ``output`` must not exist, or be
    an empty folder. optimum's progress goes to stderr unless ``quiet``. Returns ``output``.

    Raises :class:`HFExportError` with what to do.
    """
    if weight_format not in WEIGHT_FORMATS:
        raise HFExportError(f"weight format '{weight_format}' is not one of {', '.join(WEIGHT_FORMATS)}")
    checkpoint = _checkpoint_folder(source)
    output = Path(output).expanduser()
    if output.exists() and not (output.is_dir() and not any(output.iterdir())):
        raise HFExportError(f"{output} exists; give a new folder to export to")
    missing = _missing_modules((*_OPTIMUM_MODULES, "nncf") if weight_format != "fp16" else _OPTIMUM_MODULES)
    if missing:
        raise HFExportError(f"exporting a Hugging Face checkpoint needs optimum-intel (missing: {', '.join(missing)});"
                            f" install the extra: {INSTALL_HINT}")
    output.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{output.name}.export-", dir=output.parent))
    try:
        command = [sys.executable, "-m", "optimum.commands.optimum_cli", "export", "openvino",
                   "--model", str(checkpoint or source), "--task", export_task(checkpoint), "--library", "transformers",
                   "--weight-format", weight_format, str(work)]
        # A local folder needs no network: fail at once rather than wait on the hub.
        env = {**os.environ, "HF_HUB_OFFLINE": "1"} if checkpoint else None
        returncode, log = _run(command, env, quiet)
        if returncode != 0 and _GROUP_SIZE_ERROR in log:
            # int4 quantizes in groups of 128 weights (or a per-model default): for layers whose width is not a
            # multiple (SmolLM2-135M: 576), NNCF takes the largest group size that fits, else int8 for them.
            if not quiet:
                print(f"retrying with --group-size-fallback adjust ({_GROUP_SIZE_ERROR})", file=sys.stderr)
            shutil.rmtree(work)
            work.mkdir(mode=0o700)
            returncode, log = _run([*command[:-1], "--group-size-fallback", "adjust", command[-1]], env, quiet)
        if returncode != 0:
            hints = "".join(f"\n{hint}" for marker, hint in _HINTS.items() if marker in log)
            raise HFExportError(f"optimum-intel could not export {source} (exit {returncode}): {_last_error(log)}\n"
                                f"{log[-2500:]}{hints}")
        absent = [name for name in OUTPUT_FILES if not (work / name).is_file()]
        if absent:  # optimum only warns when openvino-tokenizers cannot convert the tokenizer
            raise HFExportError(f"optimum-intel exported {source} without {', '.join(absent)}; ovserve needs the "
                                f"tokenizer and detokenizer as OpenVINO IR (openvino-tokenizers):\n{log[-2500:]}")
        _write_generation_config(checkpoint or _cached_hub_file(str(source), GENERATION_CONFIG), work)
        work.chmod(0o755)  # readable by the users the server may run as (mkdtemp makes it 0700)
        work.rename(output)
    except OSError as error:
        raise HFExportError(f"could not write the export of {source} to {output}: {error}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return output


def export_task(checkpoint: Path | None) -> str:
    """The optimum task for a checkpoint: a cross-encoder's (its ``config.json`` architectures end in
    ``ForSequenceClassification``), else an LLM's (a hub id, not downloaded yet, is taken for an LLM)."""
    try:
        config = json.loads((checkpoint / "config.json").read_text()) if checkpoint is not None else {}
    except (OSError, ValueError):
        config = {}
    architectures = config.get("architectures") if isinstance(config, dict) else None
    if isinstance(architectures, list) and any(str(name).endswith("ForSequenceClassification")
                                               for name in architectures):
        return CLASSIFIER_TASK
    return TASK


def _checkpoint_folder(source: str | Path) -> Path | None:
    """The local checkpoint folder ``source`` names, or ``None`` for a Hugging Face id."""
    path = Path(source).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return path.resolve()
        if (path / IR_MODEL).is_file():
            hint = f"; it holds {IR_MODEL}, an OpenVINO IR that 'ovserve serve' serves as it is"
        elif any(path.glob("*.gguf")):
            hint = "; for a .gguf, 'ovserve serve' serves it as it is and 'ovserve export FILE.gguf' converts it"
        else:
            hint = ""
        raise HFExportError(f"{path} is not a Hugging Face checkpoint folder: it has no config.json{hint}")
    if path.exists():
        raise HFExportError(f"{path} is a file; give a Hugging Face checkpoint folder (with config.json) or id")
    if isinstance(source, str) and HF_ID.match(source):
        return None
    raise HFExportError(f"{source} is neither a Hugging Face checkpoint folder (with config.json) nor a Hugging "
                        f"Face id (org/name)")


def _missing_modules(names: Sequence[str]) -> list[str]:
    """Those of ``names`` that cannot be imported here (found without importing them)."""
    missing = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a parent package is missing, or blocked in sys.modules
            found = False
        if not found:
            missing.append(name)
    return missing


def _run(command: list[str], env: dict[str, str] | None, quiet: bool) -> tuple[int, str]:
    """Run ``command``, passing its output on to stderr unless ``quiet``; its exit code and last lines."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               env=env)
    assert process.stdout is not None
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    tail = ""
    with process:
        for chunk in iter(lambda: process.stdout.read1(65536), b""):  # type: ignore[union-attr]
            text = decoder.decode(chunk)
            if not quiet:
                sys.stderr.write(text)
                sys.stderr.flush()
            tail = (tail + text)[-200_000:]
    # Progress bars redraw with \r: keep each line's last state, and the last lines.
    lines = [line.rsplit("\r", 1)[-1] for line in tail.split("\n")]
    return process.returncode, "\n".join(line for line in lines if line.strip())


def _last_error(log: str) -> str:
    """The last line of ``log`` that names an exception (``ValueError: ...``), else its last line."""
    lines = log.splitlines() or [""]
    errors = [line for line in lines if re.match(r"^[\w.]*(Error|Exception)\b", line)]
    return (errors or lines)[-1].strip()


def _cached_hub_file(repo_id: str, filename: str) -> Path | None:
    """``filename`` of the hub repository ``repo_id`` where optimum's download left it (the Hugging Face cache)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repo_id, filename)
    return Path(found) if isinstance(found, str) else None


def _write_generation_config(original: Path | None, folder: Path) -> None:
    """Put ``generation_config.json`` into ``folder``: the checkpoint's own (``original``: the file, or the folder
    holding it) as it is, since optimum writes it again through transformers, which refuses sampling settings
    without ``do_sample``; else optimum's; else the token ids of ``config.json``."""
    target = folder / GENERATION_CONFIG
    if original is not None and original.is_dir():
        original = original / GENERATION_CONFIG
    if original is not None and original.is_file():
        shutil.copyfile(original, target)
    elif not target.is_file():
        try:
            config = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            config = {}
        keys = ("bos_token_id", "eos_token_id", "pad_token_id")
        target.write_text(json.dumps({key: config[key] for key in keys if config.get(key) is not None}, indent=2)
                          + "\n")
