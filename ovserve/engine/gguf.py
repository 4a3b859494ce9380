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
#: Real files nest arrays one or two deep; a corrupt one must not recurse without end.
MAX_ARRAY_NESTING = 16


class GGUFError(ValueError):
    """The file is not a readable GGUF file."""


class _Reader:
    """Reads the header of one GGUF file, checking every length it holds against what is left of the file,
    so that a corrupt or truncated file fails with a clear message, not a huge read."""

    def __init__(self, file: BinaryIO, path: str | Path) -> None:
        self.file = file
        self.path = path
        self.size = file.seek(0, 2)
        file.seek(0)

    def fail(self, what: str) -> GGUFError:
        return GGUFError(f"{self.path} is corrupt or truncated: {what} (at byte {self.file.tell()} of {self.size})")

    def room(self, count: int, each: int, what: str) -> None:
        """``count`` items of at least ``each`` bytes must fit in the rest of the file."""
        if count * each > self.size - self.file.tell():
            raise self.fail(f"{what} of {count} items does not fit in the file")

    def scalar(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        data = self.file.read(size)
        if len(data) != size:
            raise self.fail("the file ends inside its metadata")
        return struct.unpack(fmt, data)[0]

    def string(self) -> str:
        length = self.scalar("<Q")
        self.room(length, 1, "a string")
        return self.file.read(length).decode("utf-8", errors="replace")

    def skip(self, value_type: int, depth: int = 0) -> None:
        if depth > MAX_ARRAY_NESTING:
            raise self.fail(f"arrays nested more than {MAX_ARRAY_NESTING} deep")
        if value_type in _SCALARS:
            self.room(1, struct.calcsize(_SCALARS[value_type]), "a value")
            self.file.seek(struct.calcsize(_SCALARS[value_type]), 1)
        elif value_type == _STRING:
            length = self.scalar("<Q")
            self.room(length, 1, "a string")
            self.file.seek(length, 1)
        elif value_type == _ARRAY:
            element_type, count = self.scalar("<I"), self.scalar("<Q")
            if element_type in _SCALARS:
                self.room(count, struct.calcsize(_SCALARS[element_type]), "an array")
                self.file.seek(count * struct.calcsize(_SCALARS[element_type]), 1)
            else:
                self.room(count, 8, "an array")  # every string or array starts with an 8-byte length
                for _ in range(count):
                    self.skip(element_type, depth + 1)
        else:
            raise self.fail(f"unknown metadata value type {value_type}")

    def array(self) -> list[Any]:
        element_type, count = self.scalar("<I"), self.scalar("<Q")
        if element_type == _STRING:
            self.room(count, 8, "an array of strings")
            return [self.string() for _ in range(count)]
        if element_type in _SCALARS:
            fmt = _SCALARS[element_type]
            self.room(count, struct.calcsize(fmt), "an array")
            data = self.file.read(struct.calcsize(fmt) * count)
            return list(struct.unpack(f"<{count}{fmt[1]}", data))
        raise GGUFError(f"arrays of value type {element_type} are not read")


def read_gguf_metadata(path: str | Path, arrays: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every scalar and string metadata value of a GGUF (v2 or v3) file, plus the arrays named in
    ``arrays`` (others are skipped without decoding). Raises :class:`GGUFError` for a file that is not
    GGUF, or whose header is corrupt or cut short."""
    metadata: dict[str, Any] = {}
    with open(path, "rb") as file:
        if file.read(4) != b"GGUF":
            raise GGUFError(f"{path} is not a GGUF file (no GGUF magic number)")
        reader = _Reader(file, path)
        file.seek(4)
        version = reader.scalar("<I")
        if version < 2:
            raise GGUFError(f"{path}: GGUF version {version} is too old (2 or newer is needed)")
        reader.scalar("<Q")  # tensor count
        entries = reader.scalar("<Q")
        reader.room(entries, 12, "the metadata")  # a key's length and a value type at least
        for _ in range(entries):
            key = reader.string()
            value_type = reader.scalar("<I")
            if value_type in _SCALARS:
                metadata[key] = reader.scalar(_SCALARS[value_type])
            elif value_type == _STRING:
                metadata[key] = reader.string()
            elif value_type == _ARRAY and key in arrays:
                metadata[key] = reader.array()
            else:
                reader.skip(value_type)
    return metadata


def gguf_context_length(metadata: dict[str, Any]) -> int | None:
    """The model's trained context length (``<architecture>.context_length``), if the file says."""
    architecture = metadata.get("general.architecture")
    value = metadata.get(f"{architecture}.context_length") if architecture else None
    return int(value) if value else None
