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
    with open(path, "rb") as file:
        return _read_header(file, path, arrays)[1]


def _read_header(file: BinaryIO, path: str | Path, arrays: tuple[str, ...]) -> tuple[_Reader, dict[str, Any], int]:
    """(the reader, left just after the metadata; the metadata; how many tensors the file says it has)."""
    metadata: dict[str, Any] = {}
    if file.read(4) != b"GGUF":
        raise GGUFError(f"{path} is not a GGUF file (no GGUF magic number)")
    reader = _Reader(file, path)
    file.seek(4)
    version = reader.scalar("<I")
    if version < 2:
        raise GGUFError(f"{path}: GGUF version {version} is too old (2 or newer is needed)")
    tensors = reader.scalar("<Q")
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
    return reader, metadata, tensors


#: Bytes per block and values per block of the tensor types GGUF files hold (ggml's type numbers); a tensor of
#: another type is checked for where it starts only.
_TENSOR_BLOCKS = {
    0: (4, 1), 1: (2, 1), 2: (18, 32), 3: (20, 32), 6: (22, 32), 7: (24, 32), 8: (34, 32), 9: (36, 32),
    10: (84, 256), 11: (110, 256), 12: (144, 256), 13: (176, 256), 14: (210, 256), 15: (292, 256),
    24: (1, 1), 25: (2, 1), 26: (4, 1), 27: (8, 1), 28: (8, 1), 30: (2, 1),
}  # fmt: skip
MAX_TENSOR_DIMS = 8


def check_gguf_tensors(path: str | Path) -> int:
    """Check that every tensor the GGUF file lists lies within the file: a truncated file fails here with a
    clear message instead of crashing the native code that reads it. Returns how many tensors it has."""
    with open(path, "rb") as file:
        reader, metadata, tensors = _read_header(file, path, ())
        reader.room(tensors, 24, "the tensor table")  # a name's length, a dimension count, a type, an offset
        table = []
        for _ in range(tensors):
            name = reader.string()
            dims = reader.scalar("<I")
            if dims > MAX_TENSOR_DIMS:
                raise reader.fail(f"tensor '{name}' has {dims} dimensions")
            shape = [reader.scalar("<Q") for _ in range(dims)]
            table.append((name, shape, reader.scalar("<I"), reader.scalar("<Q")))
        alignment = int(metadata.get("general.alignment") or 32)
        data = -(-file.tell() // alignment) * alignment
    for name, shape, kind, offset in table:
        values = 1
        for extent in shape:
            values *= extent
        block_bytes, block_values = _TENSOR_BLOCKS.get(kind, (0, 1))
        end = data + offset + -(-values // block_values) * block_bytes
        if end > reader.size:
            raise GGUFError(f"{path} is truncated or corrupt: tensor '{name}' ({'x'.join(map(str, shape))}, type "
                            f"{kind}) ends at byte {end}, beyond the file's {reader.size} bytes")
    return tensors


def gguf_context_length(metadata: dict[str, Any]) -> int | None:
    """The model's trained context length (``<architecture>.context_length``), if the file says."""
    architecture = metadata.get("general.architecture")
    value = metadata.get(f"{architecture}.context_length") if architecture else None
    return int(value) if value else None
