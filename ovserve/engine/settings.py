"""What an engine process needs to know: the model files, the device, scheduler and plugin settings."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ovserve.engine.gguf import GGUFError, gguf_context_length, read_gguf_metadata

#: OpenVINO IR files that make a model folder servable (as written by optimum-intel).
IR_MODEL = "openvino_model.xml"
IR_TOKENIZER = "openvino_tokenizer.xml"
IR_DETOKENIZER = "openvino_detokenizer.xml"


@dataclass(frozen=True)
class ModelFiles:
    """A model on disk: a single ``.gguf`` file or an OpenVINO IR folder."""

    kind: Literal["gguf", "openvino_ir"]
    path: Path
    #: The context the model was trained for, if the files say (GGUF metadata or config.json).
    context_length: int | None
    #: A readable name (GGUF ``general.name`` or the folder name).
    display_name: str

    @property
    def tokenizer_path(self) -> Path:
        return self.path


def find_model_files(models_path: str | Path) -> ModelFiles:
    """Resolve ``models_path`` (a ``.gguf`` file, an IR folder, or a folder holding one ``.gguf``).

    Raises ``FileNotFoundError`` / ``ValueError`` that say what was found and what is expected.
    """
    path = Path(models_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"models_path '{path}' does not exist")
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ValueError(f"models_path '{path}' is a file but not a .gguf; give a .gguf file or an OpenVINO "
                             f"IR folder (with {IR_MODEL})")
        return _gguf_files(path)
    if (path / IR_MODEL).exists():
        missing = [name for name in (IR_TOKENIZER, IR_DETOKENIZER) if not (path / name).exists()]
        if missing:
            raise ValueError(f"the OpenVINO IR folder '{path}' has no {' or '.join(missing)}; export the model with "
                             f"its tokenizer (optimum-cli export openvino ... or convert_tokenizer --with-detokenizer)")
        return ModelFiles("openvino_ir", path, _config_context_length(path), path.name)
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
        return _gguf_files(ggufs[0])
    found = ", ".join(p.name for p in sorted(path.iterdir())[:10]) or "nothing"
    raise ValueError(f"models_path '{path}' holds neither {IR_MODEL} nor exactly one .gguf file (found: {found})")


def _gguf_files(path: Path) -> ModelFiles:
    try:
        metadata = read_gguf_metadata(path)
    except GGUFError as error:
        raise ValueError(str(error)) from None
    return ModelFiles("gguf", path, gguf_context_length(metadata), str(metadata.get("general.name") or path.stem))


def _config_context_length(folder: Path) -> int | None:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        if isinstance(config.get(key), int):
            return int(config[key])
    return None


#: ovserve's plugin defaults on CPU, applied where plugin_config does not say otherwise. Measured on a
#: 2-core AVX2 machine with SmolLM2-135M (see docs/performance.md): an f16 KV cache is as fast as the u8
#: one OpenVINO picks by default.
CPU_PLUGIN_DEFAULTS: dict[str, str] = {"KV_CACHE_PRECISION": "f16"}


def plugin_config_with_defaults(device: str, plugin_config: dict[str, Any]) -> dict[str, Any]:
    """``plugin_config`` plus ovserve's defaults for the device (the user's values win)."""
    if device == "CPU":
        return {**CPU_PLUGIN_DEFAULTS, **plugin_config}
    return dict(plugin_config)


@dataclass(frozen=True)
class EngineSettings:
    """Everything the engine process is started with (it is pickled across to it)."""

    model: ModelFiles
    device: str = "CPU"
    plugin_config: dict[str, Any] = field(default_factory=dict)
    cache_size: int = 0
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 256
    enable_prefix_caching: bool = False
    dynamic_split_fuse: bool = True
