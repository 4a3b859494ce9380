"""Running graphs: :class:`Graph` (resources built once) and :class:`GraphRun` (one per request).

The pieces live in their own modules: ``queues`` (the bounded queues between nodes), ``node_runner`` (one
calculator's task in a run), ``graph_run`` (one request) and ``graph`` (a started graph and its resources). This
module keeps the names users import.
"""

from ovserve.framework.graph import Graph, ResourceError
from ovserve.framework.graph_run import GraphRun
from ovserve.framework.queues import InputQueue, OutputPort

__all__ = ["Graph", "GraphRun", "InputQueue", "OutputPort", "ResourceError"]
