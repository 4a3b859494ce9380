"""What an engine process needs to know: the model files, the device, scheduler and plugin settings."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ovserve.engine.cpu import BATCH_INVARIANT, DEFAULTS, CPUInfo, detect_cpu
from ovserve.engine.gguf import GGUFError, check_gguf_tensors, gguf_context_length, read_gguf_metadata
from ovserve.engine.kinds import EngineCore, EngineSpec
from ovserve.engine.scheduler_options import CacheEviction, DraftModel, SparseAttention
from ovserve.engine.vision import is_vision_folder

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
    #: A VLM (image-text-to-text) folder: chat takes images (:mod:`ovserve.engine.vision`).
    vision: bool = False

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
    vision = is_vision_folder(path)
    if (path / IR_MODEL).exists() or vision:
        missing = [name for name in (IR_TOKENIZER, IR_DETOKENIZER) if not (path / name).exists()]
        if missing:
            raise ValueError(f"the OpenVINO IR folder '{path}' has no {' or '.join(missing)}; export the model with "
                             f"its tokenizer (optimum-cli export openvino ... or convert_tokenizer --with-detokenizer)")
        return ModelFiles("openvino_ir", path, _config_context_length(path), path.name, vision)
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
        return _gguf_files(ggufs[0])
    found = ", ".join(p.name for p in sorted(path.iterdir())[:10]) or "nothing"
    raise ValueError(f"models_path '{path}' holds neither {IR_MODEL} nor exactly one .gguf file (found: {found})")


def _gguf_files(path: Path) -> ModelFiles:
    try:
        metadata = read_gguf_metadata(path)
        check_gguf_tensors(path)  # a truncated file crashed the native code that reads it
    except GGUFError as error:
        raise ValueError(str(error)) from None
    # The file name says which model and quantization; GGUF general.name is often a converter's run label.
    return ModelFiles("gguf", path, gguf_context_length(metadata), path.stem)


def _config_context_length(folder: Path) -> int | None:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    for section in (config, config.get("text_config") or {}):  # a VLM's language model has its own section
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            if isinstance(section.get(key), int):
                return int(section[key])
    return None


#: The plugin_config key that loads the engine with prompt lookup decoding (as in OVMS).
PROMPT_LOOKUP = "prompt_lookup"


class BatchInvarianceError(ValueError):
    """Batch-invariant mode was asked for where ovserve cannot guarantee it."""


def plugin_config_for(device: str, plugin_config: Mapping[str, Any], *, batch_invariant: bool = False,
                      cpu: CPUInfo | None = None) -> dict[str, Any]:
    """The plugin properties an engine loads with: ``plugin_config`` over ovserve's defaults for the
    device and CPU kind (:mod:`ovserve.engine.cpu`); with ``batch_invariant``, the kind's
    batch-invariant settings, which a ``plugin_config`` may repeat but not contradict.

    Raises :class:`BatchInvarianceError` where the mode cannot be guaranteed: a device other than
    CPU, a CPU kind it has no settings for, or a ``plugin_config`` that undoes one of its settings.
    """
    if device != "CPU":
        if batch_invariant:
            raise BatchInvarianceError(
                f"batch-invariant mode runs on device CPU only; on '{device}' ovserve cannot guarantee that a "
                f"request's output does not depend on the batch (OpenVINO's GPU and NPU kernels make no such "
                f"promise, and AUTO or HETERO may pick them): serve on CPU, or leave the mode off")
        return dict(plugin_config)
    cpu = cpu or detect_cpu()
    config: dict[str, Any] = {**DEFAULTS[cpu.kind], **plugin_config}
    if not batch_invariant:
        return config
    if plugin_config.get(PROMPT_LOOKUP):
        raise BatchInvarianceError(
            f"batch-invariant mode cannot be combined with {PROMPT_LOOKUP}: prompt lookup checks a varying number "
            f"of proposed tokens in one pass, and that its greedy output does not depend on the batch has not been "
            f"established: drop {PROMPT_LOOKUP} from plugin_config or leave the mode off")
    required = BATCH_INVARIANT.get(cpu.kind)
    if required is None:
        raise BatchInvarianceError(
            f"batch-invariant mode needs an x86 CPU with AVX2, AVX-512 or AMX; this one is {cpu.describe()}, "
            f"for which no batch-invariant settings have been established: leave the mode off")
    conflicts = [f"{key}={plugin_config[key]}" for key, value in required.items()
                 if key in plugin_config and str(plugin_config[key]).lower() != value.lower()]
    if conflicts:
        wanted = ", ".join(f"{key}={value}" for key, value in required.items())
        raise BatchInvarianceError(
            f"plugin_config sets {', '.join(conflicts)}, which makes greedy output depend on the batch; "
            f"batch-invariant mode needs {wanted} on this CPU ({cpu.kind.value}): drop those keys from "
            f"plugin_config or leave the mode off")
    return {**config, **required}


@dataclass(frozen=True)
class ModelFilesSpec(EngineSpec):
    """An engine for a language model's files (``model``), on ``device`` with OpenVINO properties; named after the
    model. The batching and the stateful kinds add their settings (with defaults)."""

    model: ModelFiles
    device: str = "CPU"
    plugin_config: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.model.display_name

    @property
    def location(self) -> str:
        return str(self.model.path)


@dataclass(frozen=True)
class EngineSettings(ModelFilesSpec):
    """The text generation kind: everything its engine process is started with (it is pickled across to it)."""

    cache_size: int = 0
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 256
    enable_prefix_caching: bool = False
    dynamic_split_fuse: bool = True
    #: Greedy output independent of the batch (the plugin config already holds what that needs).
    batch_invariant: bool = False
    #: Speculative decoding with this draft model (OVMS's ``draft_models_path``); ``None``: off.
    draft: DraftModel | None = None
    #: KV cache eviction during generation (OVMS's ``cache_eviction_config``); ``None``: off.
    cache_eviction: CacheEviction | None = None
    #: Sparse attention in prefill (OVMS's ``sparse_attention_config``); ``None``: off.
    sparse_attention: SparseAttention | None = None

    def load(self) -> EngineCore:
        from ovserve.engine.llm_core import load_llm

        return load_llm(self)
