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
import sys
from pathlib import Path

from ovserve.engine.settings import IR_MODEL, ModelFiles
from ovserve.store.gguf_export import IR_WEIGHTS, GGUFExportError, export_gguf


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


def prepare_scoring(path: Path) -> None:
    """When pulling a .gguf: make the IR that top_logprobs and prompt log-probabilities use now (it is made on
    the first such request otherwise), or print on stderr why it could not be."""
    from ovserve.engine.settings import find_model_files

    model = find_model_files(path)
    if model.kind != "gguf":
        return
    try:
        scoring_model_path(model)
    except ScoringModelError as error:
        print(f"warning: {error}; it will be made when a request first asks for token alternatives", file=sys.stderr)


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
            export_gguf(model.path, folder)
            return folder / IR_MODEL
        except GGUFExportError as error:
            raise ScoringModelError(str(error)) from None
        except OSError as error:  # not writable: try the next place
            errors.append(f"{folder.parent}: {error}")
    raise ScoringModelError(f"could not write the OpenVINO IR of {model.path}: {'; '.join(errors)}")
