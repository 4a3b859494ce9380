"""The HTTP process's memory with both default models: plain ``ovserve serve`` (SmolLM2 for chat, all-MiniLM-L6-v2
for embeddings), after warm-up requests that use every model the server may load: embeddings and rerank (the
embedding model), chat and text completions with ``top_logprobs``/``logprobs`` and ``echo`` (the scoring pass), and
a plain chat completion (the engine).

The figure is the server process's own resident memory (``VmRSS`` in ``/proc/PID/status``; its peak ``VmHWM``, and
``RssAnon``: what it allocated rather than mapped from files), not its children's: the engine processes are listed
apart. Each run starts a fresh server; the table gives every run and the median.

Usage::

    python -m benchmarks.http_rss --runs 3 [--ovserve-bin .venv/bin/ovserve] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

CHAT, EMBEDDING = "smollm2", "all-minilm-l6-v2"
TEXTS = [f"Sentence number {i} says something about the weather, the sea and the mountains." for i in range(32)]
#: What each warm-up round sends (path, body); every one must answer 200.
WARM_UP: list[tuple[str, dict[str, Any]]] = [
    ("/v3/embeddings", {"model": EMBEDDING, "input": TEXTS}),
    ("/v3/embeddings", {"model": EMBEDDING, "input": TEXTS[0]}),
    ("/v3/rerank", {"model": EMBEDDING, "query": "the sea", "documents": TEXTS[:8]}),
    ("/v3/chat/completions", {"model": CHAT, "messages": [{"role": "user", "content": "Tell me about the sea."}],
                              "max_tokens": 32, "logprobs": True, "top_logprobs": 5}),
    ("/v3/completions", {"model": CHAT, "prompt": " ".join(TEXTS[:8]), "max_tokens": 0, "echo": True,
                         "logprobs": 1}),
    ("/v3/completions", {"model": CHAT, "prompt": "The capital of France is", "max_tokens": 16, "logprobs": 3,
                         "n": 2, "temperature": 1.0}),
    ("/v3/chat/completions", {"model": CHAT, "messages": [{"role": "user", "content": "Hi!"}], "max_tokens": 16}),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def status(pid: int) -> dict[str, int]:
    """The memory lines of ``/proc/PID/status``, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            fields[name] = int(value.split()[0])
    return fields


def children(pid: int) -> list[dict[str, Any]]:
    """The server's child processes (its engines): pid, what they run, resident memory (KiB)."""
    found = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            found.append({"pid": int(child), "command": command, **status(int(child))})
    return found


def post(base: str, path: str, body: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
    request = urllib.request.Request(base + path, json.dumps(body).encode(), {"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def wait_for_models(base: str, process: subprocess.Popen[bytes], timeout: float = 300) -> None:
    """Until ``/v3/models`` lists both models (the embedding model loads after the chat model is ready)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ovserve exited with {process.returncode}")
        with contextlib.suppress(OSError, urllib.error.URLError, ValueError), \
                urllib.request.urlopen(base + "/v3/models", timeout=5) as response:
            if {m["id"] for m in json.loads(response.read())["data"]} >= {CHAT, EMBEDDING}:
                return
        time.sleep(0.5)
    raise RuntimeError(f"both models were not listed within {timeout:.0f} s")


def one_run(ovserve: list[str], rounds: int, settle: float, log: Path) -> dict[str, Any]:
    """Start a server, read its memory once both models serve and again after the warm-up rounds, stop it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with open(log, "wb") as output:
        process = subprocess.Popen([*ovserve, "serve", "--port", str(port)], stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for_models(base, process)
        time.sleep(settle)
        loaded = status(process.pid)
        for _ in range(rounds):
            for path, body in WARM_UP:
                post(base, path, body)
        time.sleep(settle)
        return {"loaded": loaded, "warm": status(process.pid), "children": children(process.pid)}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def mib(kib: float) -> str:
    return f"{kib / 1024:.0f}"


def table(runs: list[dict[str, Any]]) -> str:
    """Markdown: each run's figures and the median, in MiB."""
    lines = ["| run | VmRSS loaded | VmRSS warm | VmHWM warm | RssAnon warm | engines (RSS each) |",
             "|---|---|---|---|---|---|"]
    for number, run in enumerate(runs, 1):
        engines = ", ".join(mib(child["VmRSS"]) for child in run["children"])
        lines.append(f"| {number} | {mib(run['loaded']['VmRSS'])} | {mib(run['warm']['VmRSS'])} | "
                     f"{mib(run['warm']['VmHWM'])} | {mib(run['warm']['RssAnon'])} | {engines} |")
    def median(phase: str, key: str) -> str:
        return mib(statistics.median(run[phase][key] for run in runs))

    lines.append(f"| median | {median('loaded', 'VmRSS')} | {median('warm', 'VmRSS')} | {median('warm', 'VmHWM')} | "
                 f"{median('warm', 'RssAnon')} | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="fresh servers measured one after the other")
    parser.add_argument("--rounds", type=int, default=3, help="warm-up rounds (each sends every warm-up request)")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds to wait before each reading")
    parser.add_argument("--ovserve-bin", help="the ovserve executable (default: this python's ovserve.cli)")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    ovserve = [args.ovserve_bin] if args.ovserve_bin else [sys.executable, "-m", "ovserve.cli"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent, check=False).stdout.strip()
    runs = []
    with tempfile.TemporaryDirectory(prefix="http-rss-") as tmp:
        for number in range(args.runs):
            runs.append(one_run(ovserve, args.rounds, args.settle, Path(tmp) / f"server-{number}.log"))
            print(f"run {number + 1}: HTTP process {mib(runs[-1]['warm']['VmRSS'])} MiB after warm-up", file=sys.stderr)
    print(f"commit {commit}, {os.cpu_count()} CPUs; MiB\n")
    print(table(runs), end="\n\n")
    for child in runs[-1]["children"]:
        print(f"engine pid {child['pid']}: {mib(child['VmRSS'])} MiB: {child['command']}")
    if args.json:
        args.json.write_text(json.dumps({"commit": commit, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
