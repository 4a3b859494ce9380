"""Model files the server process reads with native code are read in a child process first.

A broken file (cut short, corrupt, or a tokenizer that does not match its model) can crash the native code
that reads it: OpenVINO GenAI's tokenizer segfaulted on the first 5 MB of the default model. The models run in
engine processes of their own, but their tokenizers load in the server process, beside every other model it
serves. So before the server loads such files, :func:`load_in_child_first` loads them in a short-lived
child: if that crashes or fails, the load fails with a one-line error and the server serves on. Files that
loaded once (the same path, sizes and modification times) are not tried again in this process.

The child is ``python -m ovserve.engine.trial_load KIND PATH``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Literal

Kind = Literal["tokenizer", "encoder"]
WHAT: dict[str, str] = {"tokenizer": "tokenizer", "encoder": "embedding model's tokenizer"}
#: A child that takes longer than this is stopped and the load fails.
TIMEOUT_SECONDS = 300.0

_loaded: set[tuple[str, tuple[tuple[str, int, int], ...]]] = set()
_lock = threading.Lock()


class ModelLoadError(ValueError):
    """The model's files could not be loaded: the message says which and why."""


def _fingerprint(path: Path) -> tuple[tuple[str, int, int], ...]:
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    return tuple((str(f), (s := f.stat()).st_size, s.st_mtime_ns) for f in files)


def load_in_child_first(kind: Kind, path: Path) -> None:
    """Load ``path`` as ``kind`` in a child process, unless these very files loaded before. Blocking: call it in a
    thread. Raises :class:`ModelLoadError` saying what failed (a crash by its signal)."""
    key = (kind, _fingerprint(path))
    with _lock:
        if key in _loaded:
            return
    try:
        result = subprocess.run([sys.executable, "-m", "ovserve.engine.trial_load", kind, str(path)],
                                capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        raise ModelLoadError(f"{path}: loading its {WHAT[kind]} took more than {TIMEOUT_SECONDS:.0f} s") from None
    if result.returncode < 0:
        name = signal.Signals(-result.returncode).name
        raise ModelLoadError(f"{path}: loading its {WHAT[kind]} crashed ({name}): the files are cut short, corrupt, "
                             f"or do not belong together")
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        raise ModelLoadError(f"{path}: its {WHAT[kind]} cannot be loaded: {lines[-1] if lines else 'no reason given'}")
    with _lock:
        _loaded.add(key)


def _load(kind: str, path: Path) -> None:
    """What the server process would do with the files, and a first use of them."""
    if kind == "tokenizer":
        from ovserve.engine.settings import find_model_files
        from ovserve.engine.tokenizer import TextTokenizer

        tokenizer = TextTokenizer.load(find_model_files(path), trial=False)
        tokenizer.decode(tokenizer.encode("Hello, world!", add_special_tokens=True).tolist())
    else:
        from ovserve.engine.embedder import EncoderTokenizer

        EncoderTokenizer(path).tokenize(["Hello, world!"])


def main() -> None:
    kind, path = sys.argv[1], Path(sys.argv[2])
    try:
        _load(kind, path)
    except Exception as error:  # reported on stderr's last line, for the parent's message
        print(f"{type(error).__name__}: {str(error).strip().splitlines()[-1] if str(error).strip() else ''}",
              file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
