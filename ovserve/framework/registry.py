"""Where calculator names come from: built-ins, installed packages, folders, ``module:Class``.

- Built-ins: every module and ``*.pbtxt`` subgraph in the ``ovserve.calculators`` package.
- Installed packages: the entry-point group ``ovserve.calculators``; an entry point names a module
  (all its calculators register) or a class.
- Folders (``--calculators DIR`` or ``calculator_paths`` in config.json): every ``*.py`` and every
  ``*.pbtxt`` with a ``type:``. Each file is imported under a module name derived from its full path,
  so two ``model.py`` files in different folders both load.
- ``calculator: "package.module:ClassName"`` in a graph imports that class directly.

A name defined twice is an error that names both origins.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import pkgutil
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Literal

from ovserve.framework.calculator import Calculator, Resource
from ovserve.framework.config import LoadedGraphConfig, load_graph_config
from ovserve.framework.errors import GraphConfigError

ENTRY_POINT_GROUP = "ovserve.calculators"
Kind = Literal["calculator", "resource", "subgraph"]


@dataclass(frozen=True)
class Registration:
    """One registered name and what it stands for."""

    name: str
    kind: Kind
    target: type[Calculator] | type[Resource] | LoadedGraphConfig
    origin: str

    @property
    def calculator(self) -> type[Calculator] | type[Resource]:
        assert not isinstance(self.target, LoadedGraphConfig)
        return self.target

    @property
    def subgraph(self) -> LoadedGraphConfig:
        assert isinstance(self.target, LoadedGraphConfig)
        return self.target


class RegistryError(GraphConfigError):
    """A calculator source cannot be loaded, or a name is defined twice."""


def _kind_of(target: object) -> Kind | None:
    if isinstance(target, LoadedGraphConfig):
        return "subgraph"
    if inspect.isclass(target) and issubclass(target, Calculator) and target is not Calculator:
        return "calculator"
    if inspect.isclass(target) and issubclass(target, Resource) and target is not Resource:
        return "resource"
    return None


_SUBGRAPH_TYPE = re.compile(r"^\s*type\s*:", re.MULTILINE)


class Registry:
    """Names → calculators, resources and subgraphs."""

    def __init__(self) -> None:
        self._entries: dict[str, Registration] = {}
        self._loaded_files: set[Path] = set()

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Registration]:
        return iter(sorted(self._entries.values(), key=lambda r: r.name))

    def names(self) -> list[str]:
        return sorted(self._entries)

    def add(self, target: type[Calculator] | type[Resource] | LoadedGraphConfig, origin: str) -> Registration:
        """Register a calculator class, a resource class, or a subgraph config (by its ``type``)."""
        kind = _kind_of(target)
        if kind is None:
            raise RegistryError(f"{origin}: {target!r} is not a Calculator, Resource or subgraph config")
        name = target.config.type if isinstance(target, LoadedGraphConfig) else target.name
        existing = self._entries.get(name)
        if existing is not None:
            if existing.target is target:
                return existing
            raise RegistryError(
                f"calculator name '{name}' is defined twice: {existing.origin} and {origin}; "
                "rename one (class attribute `name = ...` or the subgraph's `type:`)"
            )
        registration = Registration(name, kind, target, origin)
        self._entries[name] = registration
        return registration

    def add_module(self, module: ModuleType, origin: str) -> list[Registration]:
        """Register every public Calculator/Resource class *defined* in ``module`` (not imported)."""
        added = []
        for attr, value in vars(module).items():
            if attr.startswith("_") or not inspect.isclass(value) or value.__module__ != module.__name__:
                continue
            if _kind_of(value) is not None and not inspect.isabstract(value):
                added.append(self.add(value, f"{origin} ({module.__name__}.{value.__qualname__})"))
        return added

    def add_subgraph_file(self, path: Path, origin: str) -> Registration | None:
        """Register a ``.pbtxt`` that declares ``type:`` as a subgraph; other graph files are skipped."""
        text = path.read_text(encoding="utf-8")
        if not _SUBGRAPH_TYPE.search(text):
            return None
        loaded = load_graph_config(path)
        if not loaded.config.type:
            return None
        return self.add(loaded, f"{origin} ({path})")

    def load_builtins(self) -> None:
        """Register everything in the ``ovserve.calculators`` package."""
        package = importlib.import_module("ovserve.calculators")
        for info in pkgutil.walk_packages(package.__path__, prefix="ovserve.calculators."):
            self.add_module(importlib.import_module(info.name), "built-in")
        for folder in package.__path__:
            for path in sorted(Path(folder).rglob("*.pbtxt")):
                self.add_subgraph_file(path, "built-in")

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Register what installed packages declare under the entry-point ``group``."""
        for entry_point in importlib.metadata.entry_points(group=group):
            origin = f"entry point '{entry_point.name}' ({entry_point.value})"
            try:
                loaded = entry_point.load()
            except Exception as error:
                raise RegistryError(f"{origin} cannot be imported: {type(error).__name__}: {error}") from error
            if inspect.ismodule(loaded):
                self.add_module(loaded, origin)
            else:
                self.add(loaded, origin)

    def load_folder(self, folder: str | Path) -> None:
        """Register every ``*.py`` and subgraph ``*.pbtxt`` directly in ``folder``."""
        folder = Path(folder)
        if not folder.is_dir():
            raise RegistryError(f"calculators folder '{folder}' does not exist or is not a directory")
        for path in sorted(folder.glob("*.py")):
            self.load_file(path)
        for path in sorted(folder.glob("*.pbtxt")):
            resolved = path.resolve()
            if resolved not in self._loaded_files:
                self._loaded_files.add(resolved)
                self.add_subgraph_file(path, "file")

    def load_file(self, path: str | Path) -> list[Registration]:
        """Import one Python file under a unique module name and register its calculators."""
        path = Path(path).resolve()
        if path in self._loaded_files:
            return []
        self._loaded_files.add(path)
        digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
        module_name = f"ovserve_user_calculators.{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{digest}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise RegistryError(f"{path}: cannot be imported as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as error:
            del sys.modules[module_name]
            raise RegistryError(f"{path}: importing it failed: {type(error).__name__}: {error}") from error
        return self.add_module(module, f"file {path}")

    def resolve(self, name: str) -> Registration:
        """The registration for ``name`` (or a ``module:Class`` reference).

        Raises ``KeyError`` whose message suggests the closest registered name.
        """
        registration = self._entries.get(name)
        if registration is not None:
            return registration
        if ":" in name:
            return self._import_reference(name)
        raise KeyError(f"unknown calculator '{name}'.{_closest_calculator(name, self._entries)} If it is one of "
                       f"yours, register the folder that defines it: --calculators DIR ('ovserve calculators "
                       f"--calculators DIR' lists what a folder registers)")

    def _import_reference(self, reference: str) -> Registration:
        module_name, _, attr = reference.partition(":")
        try:
            target = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as error:
            raise KeyError(f"calculator reference '{reference}' cannot be imported: {error}") from None
        kind = _kind_of(target)
        if kind is None:
            raise KeyError(f"'{reference}' is not a Calculator or Resource subclass")
        registration = Registration(reference, kind, target, f"reference {reference}")
        self._entries[reference] = registration
        return registration


def build_registry(
    folders: Iterable[str | Path] = (), *, builtins: bool = True, entry_points: bool = True
) -> Registry:
    """The registry a server or the CLI uses: built-ins, installed packages, then the given folders."""
    registry = Registry()
    if builtins:
        registry.load_builtins()
    if entry_points:
        registry.load_entry_points()
    for folder in folders:
        registry.load_folder(folder)
    return registry


def _closest_calculator(name: str, registered: Iterable[str]) -> str:
    """`` Did you mean 'X'?`` for the closest registered name whose part before ``Calculator`` is close too,
    so that ``UpperCalculator`` is not offered ``LLMCalculator`` for the suffix they share."""
    def stem(word: str) -> str:
        return word.removesuffix("Calculator") or word

    for close in difflib.get_close_matches(name, list(registered), n=3, cutoff=0.6):
        if difflib.SequenceMatcher(None, stem(name), stem(close)).ratio() >= 0.5:
            return f" Did you mean '{close}'?"
    return ""
