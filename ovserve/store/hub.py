"""Pulling a model from Hugging Face into the store, as OVMS's ``--source_model`` does.

- A repository with an OpenVINO IR (``openvino_model.xml``, as under the ``OpenVINO`` organisation) is
  downloaded as it is; it needs the tokenizer and detokenizer IR (a reranker the tokenizer only).
- A repository of ``.gguf`` files: the one named by ``gguf_filename``, or the only one there.
- A PyTorch/safetensors checkpoint is downloaded, then exported to OpenVINO IR through optimum-intel (the
  ``[export]`` extra), at ``weight_format``.

``HF_ENDPOINT``, ``HF_TOKEN`` and the proxy variables are honoured by huggingface_hub; its progress bars show
each download.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from ovserve.engine.rerank_kind import is_reranker
from ovserve.engine.settings import IR_DETOKENIZER, IR_MODEL, IR_TOKENIZER
from ovserve.store.fetch import ModelFetchError, fill_folder

#: A Whisper IR's encoder (``OpenVINO/whisper-*``): such a repository is downloaded as it is, as an LLM IR is.
IR_ENCODER = "openvino_encoder_model.xml"


def pull_from_hub(repo_id: str, models_dir: Path, *, gguf_filename: str | None = None,
                  weight_format: str = "int4") -> Path:
    """Download ``repo_id`` into ``models_dir/repo_id`` (if it is not there yet); returns that folder."""
    target = models_dir / repo_id
    if target.is_dir() and any(target.iterdir()):
        return target
    files = _repo_files(repo_id)
    return fill_folder(target, lambda folder: _fill(repo_id, files, folder, gguf_filename, weight_format))


def _fill(repo_id: str, files: set[str], partial: Path, gguf_filename: str | None, weight_format: str) -> None:
    if "model_index.json" in files and any(f"{name}/{IR_MODEL}" in files for name in ("unet", "transformer")):
        _download(repo_id, partial)  # an image generation IR (OpenVINO/stable-diffusion-*, OpenVINO/FLUX.*)
    elif IR_MODEL in files or IR_ENCODER in files:  # an LLM or encoder IR, a Whisper or SpeechT5 one, or Kokoro's
        missing = [name for name in _tokenizers_needed(files) if name not in files]
        if missing == [IR_DETOKENIZER]:  # a reranker reads text only (OVMS's rerank exports have no detokenizer)
            _download(repo_id, partial, allow_patterns=["config.json", "modules.json"])
            if is_reranker(partial):
                missing = []
        if missing:
            raise ModelFetchError(f"{repo_id} has an OpenVINO IR but no {' or '.join(missing)}, which serving needs")
        _download(repo_id, partial)
    elif ggufs := sorted(name for name in files if name.lower().endswith(".gguf")):
        chosen = _choose_gguf(repo_id, ggufs, gguf_filename)
        _download(repo_id, partial, allow_patterns=[chosen])
    elif "config.json" in files:
        _export(repo_id, partial, weight_format)
    else:
        raise ModelFetchError(f"{repo_id} holds no OpenVINO IR ({IR_MODEL}), no .gguf and no Hugging Face checkpoint "
                              f"(config.json); found: {', '.join(sorted(files)[:10]) or 'nothing'}")


def _tokenizers_needed(files: set[str]) -> tuple[str, ...]:
    """The tokenizer IR a repository's model needs to be served: SpeechT5 (a vocoder beside it) reads with its
    tokenizer only; Kokoro (a model and ``voices/``) phonemizes its text and has none; every other model needs both."""
    if "openvino_vocoder.xml" in files:
        return (IR_TOKENIZER,)
    if IR_MODEL in files and any(name.startswith("voices/") and name.endswith(".bin") for name in files):
        return ()
    return (IR_TOKENIZER, IR_DETOKENIZER)


def check_reachable(timeout: float = 3.0) -> None:
    """Fail at once, in one line, when the hub cannot be reached (huggingface_hub retries for half a minute,
    logging each try). Through a proxy (``https_proxy``), or with ``HF_HUB_OFFLINE``, the hub client decides."""
    if any(os.environ.get(name) for name in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
                                             "HF_HUB_OFFLINE")):
        return
    endpoint = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        raise ModelFetchError(f"cannot reach {host}:{port} ({error.strerror or error}); this machine may be offline: "
                              f"set HF_ENDPOINT for a mirror or https_proxy, or give a model on disk") from None


def _repo_files(repo_id: str) -> set[str]:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    check_reachable()
    try:
        return set(HfApi().list_repo_files(repo_id))
    except RepositoryNotFoundError:
        raise ModelFetchError(f"Hugging Face has no model '{repo_id}' (or it is private: set HF_TOKEN)") from None
    except Exception as error:  # the HTTP errors of whichever client huggingface_hub uses
        raise ModelFetchError(f"cannot reach Hugging Face for {repo_id}: {error}; set HF_ENDPOINT for a mirror, "
                              f"or https_proxy") from None


def _choose_gguf(repo_id: str, ggufs: list[str], gguf_filename: str | None) -> str:
    if gguf_filename is not None:
        if gguf_filename not in ggufs:
            raise ModelFetchError(f"{repo_id} has no {gguf_filename}; its .gguf files: {', '.join(ggufs)}")
        return gguf_filename
    if len(ggufs) > 1:
        raise ModelFetchError(f"{repo_id} has {len(ggufs)} .gguf files; choose one with --gguf-filename: "
                              f"{', '.join(ggufs)}")
    return ggufs[0]


def _download(repo_id: str, folder: Path, allow_patterns: list[str] | None = None) -> None:
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(repo_id, local_dir=folder, allow_patterns=allow_patterns)
    except Exception as error:  # as above
        raise ModelFetchError(f"downloading {repo_id} failed: {error}") from None
    shutil.rmtree(folder / ".cache", ignore_errors=True)  # huggingface_hub's download bookkeeping


def _export(repo_id: str, folder: Path, weight_format: str) -> None:
    from ovserve.store.catalog import refuse_speech_checkpoint
    from ovserve.store.hf_export import HFExportError, export_checkpoint

    with tempfile.TemporaryDirectory(prefix="ovserve-checkpoint-") as checkpoint:
        _download(repo_id, Path(checkpoint))
        refuse_speech_checkpoint(Path(checkpoint), repo_id)
        try:
            export_checkpoint(Path(checkpoint), folder, weight_format)
        except HFExportError as error:
            raise ModelFetchError(str(error)) from None
