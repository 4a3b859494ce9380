"""A ``.gguf`` as an OpenVINO IR folder, with no PyTorch: openvino-genai reads the GGUF and writes the model
it builds (``LLMPipeline(..., enable_save_ov_model=True)``): ``openvino_model.xml/.bin``, the tokenizer and
the detokenizer. ``ovserve export`` and the logit scorer use it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ovserve.engine.settings import IR_DETOKENIZER, IR_MODEL, IR_TOKENIZER

IR_WEIGHTS = "openvino_model.bin"
IR_FILES = (IR_MODEL, IR_WEIGHTS, IR_TOKENIZER, IR_DETOKENIZER)


class GGUFExportError(RuntimeError):
    """openvino-genai could not convert the file."""


def export_gguf(gguf: Path, target: Path) -> None:
    """Write the IR of ``gguf`` into the new folder ``target`` (atomically: a finished folder or none).

    The conversion runs in a child process (it loads the whole pipeline: about 7 s and a few hundred MB
    for the default model). Raises :class:`GGUFExportError`, or ``OSError`` where ``target`` cannot be
    written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".ovserve-ir-", dir=target.parent))
    work.chmod(0o755)  # readable by the users the server may run as
    try:
        (work / gguf.name).symlink_to(gguf.resolve())  # genai writes the IR next to the path it is given
        script = "import sys, openvino_genai as g; g.LLMPipeline(sys.argv[1], 'CPU', enable_save_ov_model=True)"
        result = subprocess.run([sys.executable, "-c", script, str(work / gguf.name)], capture_output=True,
                                text=True, check=False)
        (work / gguf.name).unlink()
        if result.returncode != 0 or not all((work / name).is_file() for name in IR_FILES):
            raise GGUFExportError(f"openvino-genai could not convert {gguf} to OpenVINO IR: "
                                  f"{(result.stderr or result.stdout).strip()[-1500:]}")
        try:
            work.rename(target)
        except OSError:
            if not (target / IR_MODEL).is_file():  # another process may have finished first
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
