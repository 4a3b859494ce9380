"""Broken copies of the default model, as a user may have them: cut short by a failed download, overwritten in
places, or an IR folder whose files do not belong together."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

#: What is wrong with each, by name.
BROKEN = {
    "gguf_cut_5mb": "the first 5 MB of the .gguf (its header whole, its tensors cut)",
    "gguf_cut_50mb": "the first 50 MB of the .gguf",
    "gguf_garbage_metadata": "the .gguf with random bytes over its metadata",
    "ir_cut_bin": "an IR folder whose openvino_model.bin is cut to 20 MB",
    "ir_garbage_xml": "an IR folder whose openvino_model.xml ends in garbage after 3,000 bytes",
    "ir_wrong_tokenizer": "an IR folder with another model's tokenizer (all-minilm-l6-v2's WordPiece)",
}


def make_broken_models(gguf: Path, ir_folder: Path, root: Path) -> dict[str, Path]:
    """Every model of :data:`BROKEN`, made under ``root``; returns name -> path."""
    data = gguf.read_bytes()
    made: dict[str, Path] = {}
    for name, size in (("gguf_cut_5mb", 5_000_000), ("gguf_cut_50mb", 50_000_000)):
        made[name] = root / f"{name}.gguf"
        made[name].write_bytes(data[:size])
    garbage = bytearray(data)
    garbage[2000:6000] = random.Random(1).randbytes(4000)
    made["gguf_garbage_metadata"] = root / "gguf_garbage_metadata.gguf"
    made["gguf_garbage_metadata"].write_bytes(bytes(garbage))
    for name in ("ir_cut_bin", "ir_garbage_xml", "ir_wrong_tokenizer"):
        made[name] = shutil.copytree(ir_folder, root / name)
    weights = made["ir_cut_bin"] / "openvino_model.bin"
    weights.write_bytes(weights.read_bytes()[:20_000_000])
    graph = made["ir_garbage_xml"] / "openvino_model.xml"
    graph.write_bytes(graph.read_bytes()[:3000] + b"<net garbage")
    from ovserve.store.fetch import DEFAULT_EMBEDDING_MODEL, pull

    encoder = pull(DEFAULT_EMBEDDING_MODEL, quiet=True)
    for suffix in ("xml", "bin"):
        shutil.copy(encoder / f"openvino_tokenizer.{suffix}", made["ir_wrong_tokenizer"] / f"openvino_tokenizer.{suffix}")
    return made
