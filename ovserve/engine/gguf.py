"""Read the metadata key-values at the head of a GGUF file (context length, architecture, name).

The ``gguf`` package from llama.cpp reads whole files (tensor tables included, ~3 s for a 100 MB model
here) and pulls requests/tqdm/pyyaml; the server only needs a few scalars at start-up, so this reads
the documented header and skips arrays without decoding them.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

_SCALARS = {
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d",
}  # fmt: skip
_STRING, _ARRAY = 8, 9


class GGUFError(ValueError):
    """The file is not a readable GGUF file."""


def _read(file: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = file.read(size)
    if len(data) != size:
        raise GGUFError("the file ends inside its metadata")
    return struct.unpack(fmt, data)[0]


def _read_string(file: BinaryIO) -> str:
    length = _read(file, "<Q")
    return file.read(length).decode("utf-8", errors="replace")


def _skip_value(file: BinaryIO, value_type: int) -> None:
    if value_type in _SCALARS:
        file.seek(struct.calcsize(_SCALARS[value_type]), 1)
    elif value_type == _STRING:
        file.seek(_read(file, "<Q"), 1)
    elif value_type == _ARRAY:
        element_type, count = _read(file, "<I"), _read(file, "<Q")
        if element_type in _SCALARS:
            file.seek(count * struct.calcsize(_SCALARS[element_type]), 1)
        else:
            for _ in range(count):
                _skip_value(file, element_type)
    else:
        raise GGUFError(f"unknown metadata value type {value_type}")


def _read_array(file: BinaryIO) -> list[Any]:
    element_type, count = _read(file, "<I"), _read(file, "<Q")
    if element_type == _STRING:
        return [_read_string(file) for _ in range(count)]
    if element_type in _SCALARS:
        fmt = _SCALARS[element_type]
        size = struct.calcsize(fmt)
        data = file.read(size * count)
        return list(struct.unpack(f"<{count}{fmt[1]}", data))
    raise GGUFError(f"arrays of value type {element_type} are not read")


def read_gguf_metadata(path: str | Path, arrays: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every scalar and string metadata value of a GGUF (v2 or v3) file, plus the arrays named in
    ``arrays`` (others are skipped without decoding)."""
    metadata: dict[str, Any] = {}
    with open(path, "rb") as file:
        if file.read(4) != b"GGUF":
            raise GGUFError(f"{path} is not a GGUF file (no GGUF magic number)")
        version = _read(file, "<I")
        if version < 2:
            raise GGUFError(f"{path}: GGUF version {version} is too old (2 or newer is needed)")
        _read(file, "<Q")  # tensor count
        for _ in range(_read(file, "<Q")):
            key = _read_string(file)
            value_type = _read(file, "<I")
            if value_type in _SCALARS:
                metadata[key] = _read(file, _SCALARS[value_type])
            elif value_type == _STRING:
                metadata[key] = _read_string(file)
            elif value_type == _ARRAY and key in arrays:
                metadata[key] = _read_array(file)
            else:
                _skip_value(file, value_type)
    return metadata


def gguf_context_length(metadata: dict[str, Any]) -> int | None:
    """The model's trained context length (``<architecture>.context_length``), if the file says."""
    architecture = metadata.get("general.architecture")
    value = metadata.get(f"{architecture}.context_length") if architecture else None
    return int(value) if value else None
