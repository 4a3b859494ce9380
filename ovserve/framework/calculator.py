"""The classes users subclass: :class:`Calculator` (per request) and :class:`Resource` (per graph load)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from ovserve.framework.metrics import Histogram
from ovserve.framework.packet import Packet
from ovserve.framework.ports import Contract, Port

if TYPE_CHECKING:
    from ovserve.framework.queues import OutputPort


class NoOptions(BaseModel):
    """The options model of a calculator that takes none: any option given is an error."""

    model_config = ConfigDict(extra="forbid")


def _port_key(port: str | Port) -> str:
    return port if isinstance(port, str) else (port.tag or "")


class CalculatorContext:
    """What a calculator sees while it runs: options, side packets, the current inputs, and outputs.

    One context exists per node per graph run; the framework updates ``inputs`` and ``timestamp``
    before each ``process`` call.
    """

    __slots__ = ("_outputs", "base_path", "inputs", "node", "options", "side", "timestamp")

    def __init__(
        self,
        node: str,
        options: Any,
        side: Mapping[str, Any],
        outputs: dict[str, OutputPort],
        base_path: Path,
    ) -> None:
        self.node = node
        #: The validated options (an instance of the calculator's ``Options`` model).
        self.options = options
        #: Side packets by tag (``ctx.side["TOKENIZER"]``): shared resources, read-only.
        self.side = side
        #: The directory of the graph file, for resolving relative paths in options.
        self.base_path = base_path
        #: The packets of the current ``process`` call by port (``"TEXT"``, ``"TEXT:1"``). With several
        #: inputs, only those that have a packet at this timestamp are present.
        self.inputs: dict[str, Packet] = {}
        #: The timestamp of the current input set (0 in ``open``).
        self.timestamp = 0
        self._outputs = outputs

    def value(self, port: str | Port, default: Any = None) -> Any:
        """The value of the current packet on ``port``, or ``default`` when it has none this time."""
        packet = self.inputs.get(_port_key(port))
        return default if packet is None else packet.value

    def send(self, port: str | Port, value: Any, timestamp: int | None = None) -> Awaitable[None]:
        """Send ``value`` on the output ``port``.

        The packet is queued at once. The returned awaitable completes when every consumer has room
        again: ``await ctx.send(...)`` in an async ``process`` gives backpressure, while a sync
        ``process`` may ignore it (the framework waits for room after ``process`` returns). The
        timestamp defaults to the current input's, or one more than the last packet on this output.
        Sending on an output the graph does not connect does nothing.
        """
        key = port if port.__class__ is str else _port_key(port)
        out = self._outputs.get(key)
        if out is None:
            raise KeyError(f"node '{self.node}' has no output port '{key}'")
        return out.send(value, self.timestamp if timestamp is None else timestamp, timestamp is not None)

    def close_output(self, port: str | Port) -> None:
        """Declare that no more packets will be sent on ``port`` (otherwise done when the node ends)."""
        out = self._outputs.get(_port_key(port))
        if out is not None:
            out.close()

    def is_connected(self, port: str | Port) -> bool:
        """Whether the graph connects the output ``port`` to anything."""
        out = self._outputs.get(_port_key(port))
        return out is not None and bool(out.consumers)


class ResourceContext:
    """What a resource sees when the graph loads: its options, side inputs, and where to put outputs."""

    def __init__(self, node: str, options: Any, side: Mapping[str, Any], base_path: Path) -> None:
        self.node = node
        self.options = options
        self.side = side
        self.base_path = base_path
        self.outputs: dict[str, Any] = {}

    def set(self, port: str | Port, value: Any) -> None:
        """Provide the side packet for the output ``port``; every declared side output must be set."""
        self.outputs[_port_key(port)] = value


class _Declared:
    """Shared by calculators and resources: ports, options and registration metadata."""

    #: The pydantic model validating this node's options (``node_options``). Models should forbid
    #: extra fields so that a misspelt option fails at load.
    Options: ClassVar[type[BaseModel]] = NoOptions
    #: The protobuf type name the options are written under in graph files
    #: (``[type.googleapis.com/<options_type>]``). Empty accepts any name.
    options_type: ClassVar[str] = ""
    #: The name graphs use in ``calculator: "..."``; defaults to the class name.
    name: ClassVar[str] = ""
    contract: ClassVar[Contract]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for attr, value in list(vars(cls).items()):
            if isinstance(value, Port) and value.tag is None:
                setattr(cls, attr, value.named(attr))  # so that ctx.send(self.OUT, ...) knows its tag
        cls.contract = Contract.collect(cls)
        if "name" not in vars(cls) or not cls.name:
            cls.name = cls.__name__

    @classmethod
    def describe(cls) -> str:
        """The first line of the class docstring."""
        doc = inspect.getdoc(cls) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""


class Calculator(_Declared):
    """A processing step in a graph. Subclass it, declare ports and options, implement ``process``.

    A fresh instance is created for every graph run (one per request), so per-request state lives in
    ``self``. Each hook may be a plain method or ``async def``. Example::

        class Uppercase(Calculator):
            TEXT = Input(str)
            UPPER = Output(str)

            def process(self, ctx: CalculatorContext) -> None:
                ctx.send(self.UPPER, ctx.value(self.TEXT).upper())
    """

    #: ``DefaultInputStreamHandler``: with several inputs, ``process`` gets the packets of one
    #: timestamp together. ``ImmediateInputStreamHandler``: one packet per call, as it arrives.
    #: A node's ``input_stream_handler`` in the graph config overrides this.
    input_stream_handler: ClassVar[str] = "DefaultInputStreamHandler"

    #: A plain ``process`` runs on the event loop, so it must not block: it would stall every other
    #: request. One that blocks (CPU work, file or network I/O) sets this, and then runs in a thread pool;
    #: its sends are delivered when it returns. A node's ``executor:`` in the graph does the same.
    runs_in_thread: ClassVar[bool] = False

    def open(self, ctx: CalculatorContext) -> Awaitable[None] | None:
        """Called once per run, before the first ``process``. Set up per-request state here.

        May send packets (timestamp 0). If it raises, the run fails and ``close`` is not called.
        """

    def process(self, ctx: CalculatorContext) -> Awaitable[None] | None:
        """Called for each input set (``ctx.inputs`` at ``ctx.timestamp``) in timestamp order.

        A calculator without input streams gets one call. Send results with ``ctx.send``; several
        sends per call stream results (that is how tokens are streamed). Raising fails the run: the
        caller gets a :class:`~ovserve.framework.errors.CalculatorError` naming this node.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement process()")

    def close(self, ctx: CalculatorContext) -> Awaitable[None] | None:
        """Called exactly once after ``open`` completed: when inputs are exhausted, after an error
        anywhere in the run, or when the run is cancelled (client gone). Release what ``open`` took;
        it must not wait on other nodes."""


class Resource(_Declared):
    """Something built once when the graph loads and shared by every run: a model, a tokenizer, an
    engine client. It declares ``SideOutput`` ports, sets them in ``open``, and may read
    ``SideInput`` ports provided by other resources or by the host.

    Resources are nodes in the graph config with only side packets::

        node { calculator: "LLMEngine" output_side_packet: "ENGINE:engine" node_options { ... } }
    """

    #: Where this resource's work runs, as ``ovserve graph show`` draws it: empty for the server's own process; a
    #: resource whose model runs in a process of its own names it (``"engine process"``).
    runs_in: ClassVar[str] = ""

    def open(self, ctx: ResourceContext) -> Awaitable[None] | None:
        """Called once at graph load, in dependency order. Must ``ctx.set`` every side output.
        Raising fails the load with the node's name."""
        raise NotImplementedError(f"{type(self).__name__} must implement open()")

    def close(self) -> Awaitable[None] | None:
        """Called once when the graph is unloaded (server shutdown or reload), in reverse order."""

    def is_ready(self) -> bool:
        """Whether the resource can serve now (for readiness probes); an engine that is restarting
        returns ``False``."""
        return True

    def metrics(self) -> dict[str, float]:
        """Gauges to publish on the server's ``/metrics`` (name → value); called on each scrape."""
        return {}

    def histograms(self) -> dict[str, Histogram]:
        """Distributions to publish on the server's ``/metrics`` (name → the resource's own
        :class:`~ovserve.framework.metrics.Histogram`, which it keeps observing); called on each scrape."""
        return {}
