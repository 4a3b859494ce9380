"""The OpenVINO IR that the logit scorer runs: the model's own IR, or one converted from its ``.gguf``.

``openvino.Core`` cannot read a ``.gguf``; openvino-genai can, and writes the model it builds as IR
when asked (``LLMPipeline(..., enable_save_ov_model=True)``). The conversion runs once per model file, in
a child process (it loads the whole pipeline, about 7 s for the default model), and lands in a folder
next to the ``.gguf`` when that folder is writable, else in ``$OVSERVE_CACHE_DIR`` (default
``~/.cache/ovserve``). ``ovserve pull`` does it ahead of time for the default model.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ovserve.engine.settings import IR_MODEL, ModelFiles

IR_WEIGHTS = "openvino_model.bin"


class ScoringModelError(RuntimeError):
    """The model's IR could not be found or made."""


def cache_dir() -> Path:
    """``$OVSERVE_CACHE_DIR``, else ``~/.cache/ovserve``."""
    return Path(os.environ.get("OVSERVE_CACHE_DIR") or Path.home() / ".cache" / "ovserve")


def _candidates(gguf: Path) -> list[Path]:
    """Where the IR of ``gguf`` may be, best first: beside it, then in the cache (keyed by path, size, time)."""
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return [gguf.parent / f".{gguf.stem}.openvino", cache_dir() / "ir" / f"{gguf.stem}-{key}"]


def _complete(folder: Path) -> bool:
    return (folder / IR_MODEL).is_file() and (folder / IR_WEIGHTS).is_file()


def scoring_model_path(model: ModelFiles, *, convert: bool = True) -> Path:
    """The ``openvino_model.xml`` to score ``model`` with; converts a ``.gguf`` the first time when ``convert``.

    Raises :class:`ScoringModelError` when there is none and it cannot be made."""
    if model.kind == "openvino_ir":
        return model.path / IR_MODEL
    candidates = _candidates(model.path)
    for folder in candidates:
        if _complete(folder):
            return folder / IR_MODEL
    if not convert:
        raise ScoringModelError(f"no OpenVINO IR of {model.path} yet")
    errors = []
    for folder in candidates:
        try:
            _convert(model.path, folder)
            return folder / IR_MODEL
        except OSError as error:  # not writable: try the next place
            errors.append(f"{folder.parent}: {error}")
    raise ScoringModelError(f"could not write the OpenVINO IR of {model.path}: {'; '.join(errors)}")


def _convert(gguf: Path, target: Path) -> None:
    """Have openvino-genai write the IR of ``gguf`` into ``target`` (atomically: a finished folder or none)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".ovserve-ir-", dir=target.parent))
    work.chmod(0o755)  # readable by the users the server may run as
    try:
        (work / gguf.name).symlink_to(gguf.resolve())  # genai writes the IR next to the path it is given
        script = ("import sys, openvino_genai as g; "
                  "g.LLMPipeline(sys.argv[1], 'CPU', enable_save_ov_model=True)")
        result = subprocess.run([sys.executable, "-c", script, str(work / gguf.name)], capture_output=True,
                                text=True, check=False)
        if result.returncode != 0 or not _complete(work):
            raise ScoringModelError(f"openvino-genai could not convert {gguf} to OpenVINO IR: "
                                    f"{(result.stderr or result.stdout).strip()[-1500:]}")
        (work / gguf.name).unlink()
        try:
            work.rename(target)
        except OSError:
            if not _complete(target):  # another process may have finished first
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
