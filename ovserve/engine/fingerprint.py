"""``system_fingerprint``: which model, computed how, answered a completion (OpenAI's field).

OpenAI changes the fingerprint when the backend changes in a way that can change answers. ovserve's is a hash of
what decides the numbers a request gets back: the model's files, the engine's version, the device and CPU kind,
the plugin settings in effect (inference precision, KV cache precision, dynamic quantization, prompt lookup,
...), the scheduler settings that change the shapes a prompt is computed in (prefix caching, split prefill and
its size, batch-invariant mode), the model's default sampling settings, and how its output is parsed (tool calls,
reasoning). Settings that only bound or pace the work (KV cache size, most sequences per step, request limits,
timeouts) and the served name leave it unchanged. It is computed once, when the engine node loads.

The model's identity is a digest of its files' sizes and of samples of their contents (the start, the end and
evenly spaced blocks between), so that a model of gigabytes is not read whole at each load: the same files
anywhere give the same fingerprint, and a changed file changes it but for a change that falls between samples
and keeps the size.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ovserve import __version__
from ovserve.engine.cpu import CPUInfo
from ovserve.engine.settings import IR_DETOKENIZER, IR_MODEL, IR_TOKENIZER, EngineSettings, ModelFiles

#: Bytes read at each sampled place of a model file, and how many places (a smaller file is read whole).
SAMPLE_BYTES = 1 << 20
SAMPLES = 8
#: How many hex digits of the hash follow ``fp_``.
DIGITS = 10


def file_identity(path: Path) -> str:
    """A digest of ``path``'s size and sampled contents (its whole contents up to ``SAMPLES`` x ``SAMPLE_BYTES``)."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    digest.update(f"{size}:".encode())
    with path.open("rb") as file:
        if size <= SAMPLES * SAMPLE_BYTES:
            digest.update(file.read())
        else:
            for number in range(SAMPLES):
                file.seek((size - SAMPLE_BYTES) * number // (SAMPLES - 1))
                digest.update(file.read(SAMPLE_BYTES))
    return digest.hexdigest()


def model_identity(model: ModelFiles) -> str:
    """A digest of the files the engine and tokenizer load: the ``.gguf``, or the IR folder's model, tokenizer and
    detokenizer (``.xml`` and ``.bin``). Blocking (it reads up to a few MB a file): call it in a thread."""
    if model.kind == "gguf":
        files = [model.path]
    else:
        names = (IR_MODEL, IR_TOKENIZER, IR_DETOKENIZER)
        files = [model.path / name for stem in names for name in (stem, stem.removesuffix(".xml") + ".bin")]
    digest = hashlib.sha256()
    for path in files:
        if path.exists():
            digest.update(f"{path.name}={file_identity(path)};".encode())
    return digest.hexdigest()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _plain(value: Any) -> Any:
    """``value`` as JSON-able data: a pydantic model's or a dataclass's fields, else the value itself."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return value


def system_fingerprint(model_digest: str, settings: EngineSettings, cpu: CPUInfo | None,
                       answer_settings: Mapping[str, Any] | None = None) -> str:
    """``fp_`` and :data:`DIGITS` hex digits of a hash of what changes answers: the model (``model_digest`` from
    :func:`model_identity`), the engine's version, ``settings``' device, plugin config and shape-changing scheduler
    settings, the CPU kind, and ``answer_settings`` (default sampling, parsers: any JSON-able values)."""
    parts = {
        "model": model_digest,
        "openvino_genai": _version("openvino-genai"),
        "ovserve": __version__,
        "device": settings.device,
        "cpu": cpu.kind.value if cpu is not None and settings.device == "CPU" else None,
        "plugin_config": settings.plugin_config,
        "enable_prefix_caching": settings.enable_prefix_caching,
        "dynamic_split_fuse": settings.dynamic_split_fuse,
        "max_num_batched_tokens": settings.max_num_batched_tokens,
        "batch_invariant": settings.batch_invariant,
        # Speculative decoding checks several tokens a pass, eviction drops tokens, sparse attention skips some:
        # each changes what is computed (the draft by its path and scheduler; its files are not hashed).
        **{name: _plain(getattr(settings, name)) for name in ("draft", "cache_eviction", "sparse_attention")
           if getattr(settings, name, None) is not None},
        "answers": {key: _plain(value) for key, value in (answer_settings or {}).items()},
    }
    text = json.dumps(parts, sort_keys=True, default=str)
    return "fp_" + hashlib.sha256(text.encode()).hexdigest()[:DIGITS]
