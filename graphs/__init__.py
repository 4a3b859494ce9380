"""Ready-made graph configs shipped with ovserve (installed as ``ovserve.graphs``)."""

from pathlib import Path

#: The folder holding the ``*.pbtxt`` files.
GRAPHS_DIR = Path(__file__).parent


def graph_path(name: str) -> Path:
    """The path of a shipped graph, e.g. ``graph_path("llm.pbtxt")``."""
    return GRAPHS_DIR / name
