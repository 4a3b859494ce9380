"""The client libraries people build on (LiteLLM, LlamaIndex, LangChain) against a live ``ovserve serve``.

None of these tests may need the network: each module runs its tests under ``refuse_the_network`` (the LlamaIndex
module, whose tests run scripts in a virtual environment of their own, does the same in those scripts), so a
library that would fetch a price map, a tokenizer or NLTK data on first use fails the test at once instead of
hanging on a machine that has no internet."""

from __future__ import annotations

import socket

import pytest

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def refuse_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resolve only the loopback host for the rest of the test: any other name fails as if it had no address."""
    resolve = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name not in LOOPBACK:
            raise socket.gaierror(socket.EAI_NONAME, f"these tests are offline: {name!r} is not resolved")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
