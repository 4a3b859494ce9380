"""Soak: a long run of streams against ``ovserve serve --config`` while clients misbehave and the config changes.

Usage::

    python -m benchmarks.soak [--minutes 10] [--streams 16] [--disconnect-share 0.10] [--malformed-share 0.05]

``--streams`` clients loop until the time is up. Each request is, at random:

- **a disconnect** (``--disconnect-share``): a streamed chat the client drops after a few chunks;
- **malformed** (``--malformed-share``): one of :data:`MALFORMED`, which must get a 4xx with an OpenAI error body;
- otherwise **a streamed chat** of 16 to 128 tokens, which must end with a finish reason, its usage and
  ``data: [DONE]``.

At 40% of the run the graph of ``chat`` is edited (a node renamed: the graph is swapped, its engine kept) and a
second model, ``chat-b``, is added to config.json; at 70% ``chat-b`` is removed again. Anything else than the
expected answer counts as an unexpected error. When the time is up, a last phase
(:mod:`benchmarks.disconnect_phase`, ``--disconnect-rounds``) drops streams while another one runs, then checks
that the engine goes idle: no CPU, no steps, no handles held. The resident memory of the server, its engines
and the whole process tree is sampled every ``--sample-every`` seconds; "start" is the first sample after the warm-up.
Writes ``soak-<stamp>.json`` and ``.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks import peers
from benchmarks.disconnect_phase import describe, disconnects_under_load, idle
from benchmarks.tables import markdown
from benchmarks.workload import MODEL_PATH

REPO_ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ["Tell me about the sea.", "What is a prime number?", "Describe a cat.", "Why is the sky blue?",
             "Write a haiku about rain.", "How do plants grow?", "What is Python?", "Name three rivers."]
#: Requests that must be refused: (what is wrong, the raw body).
MALFORMED: list[tuple[str, bytes]] = [
    ("truncated JSON", b'{"model": "chat", "messages": ['),
    ("not an object", b"[1, 2, 3]"),
    ("binary garbage", bytes(range(256))),
    ("messages is a string", b'{"model": "chat", "messages": "hi"}'),
    ("no messages", b'{"model": "chat"}'),
    ("unknown model", b'{"model": "nope", "messages": [{"role": "user", "content": "hi"}]}'),
    ("negative max_tokens", b'{"model": "chat", "max_tokens": -1, "messages": [{"role": "user", "content": "hi"}]}'),
    ("temperature as text", b'{"model": "chat", "temperature": "hot", "messages": [{"role": "user", "content": "x"}]}'),
    ("unknown role", b'{"model": "chat", "messages": [{"role": "wizard", "content": "hi"}]}'),
    ("tool without a function", b'{"model": "chat", "tools": [{"type": "function"}], '
                                b'"messages": [{"role": "user", "content": "hi"}]}'),
    ("prompt over the context", json.dumps({"model": "chat", "messages": [
        {"role": "user", "content": "word " * 20000}]}).encode()),
    ("n of zero", b'{"model": "chat", "n": 0, "messages": [{"role": "user", "content": "hi"}]}'),
]


@dataclass
class Tally:
    """What the clients saw."""

    outcomes: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    tokens: int = 0

    def fail(self, what: str) -> None:
        self.outcomes["unexpected"] += 1
        if len(self.unexpected) < 50:
            self.unexpected.append(what)


def chat_body(rng: random.Random, model: str, max_tokens: int) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": rng.choice(QUESTIONS)}], "stream": True,
            "max_tokens": max_tokens, "temperature": 0.7, "seed": rng.randrange(1 << 30),
            "stream_options": {"include_usage": True}}


async def streamed_chat(client: httpx.AsyncClient, rng: random.Random, tally: Tally) -> None:
    """A whole streamed chat: 200, chunks, a finish reason, usage, then ``[DONE]``."""
    finish, usage, done = None, None, False
    async with client.stream("POST", "/v3/chat/completions", json=chat_body(rng, "chat", rng.randint(16, 128))) \
            as response:
        if response.status_code != 200:
            tally.fail(f"chat: HTTP {response.status_code}: {(await response.aread())[:200]!r}")
            return
        async for line in response.aiter_lines():
            if line == "data: [DONE]":
                done = True
            elif line.startswith("data: "):
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    tally.fail(f"chat: error event {chunk['error']}")
                    return
                finish = next((c["finish_reason"] for c in chunk.get("choices", []) if c.get("finish_reason")), finish)
                usage = chunk.get("usage") or usage
    if not (done and finish in ("stop", "length") and usage):
        tally.fail(f"chat: incomplete stream (finish {finish}, usage {usage}, [DONE] {done})")
        return
    tally.tokens += usage["completion_tokens"]
    tally.outcomes["completed"] += 1


async def disconnect(client: httpx.AsyncClient, rng: random.Random, tally: Tally) -> None:
    """A streamed chat the client drops after a few chunks."""
    leave_after = rng.randint(1, 20)
    async with client.stream("POST", "/v3/chat/completions", json=chat_body(rng, "chat", 256)) as response:
        if response.status_code != 200:
            tally.fail(f"disconnect: HTTP {response.status_code}")
            return
        seen = 0
        async for line in response.aiter_lines():
            seen += line.startswith("data: ")
            if seen >= leave_after:
                break
    tally.outcomes["disconnected"] += 1


async def malformed(client: httpx.AsyncClient, rng: random.Random, tally: Tally) -> None:
    """A request that must be refused with a 4xx and an OpenAI error body."""
    what, body = rng.choice(MALFORMED)
    response = await client.post("/v3/chat/completions", content=body, headers={"content-type": "application/json"})
    try:
        error = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        error = None
    if not 400 <= response.status_code < 500 or not error:
        tally.fail(f"malformed ({what}): HTTP {response.status_code}: {response.text[:200]}")
        return
    tally.outcomes["refused"] += 1


async def client_loop(base_url: str, seed: int, until: float, shares: tuple[float, float], tally: Tally) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
        while time.monotonic() < until:
            draw = rng.random()
            kind = disconnect if draw < shares[0] else malformed if draw < shares[0] + shares[1] else streamed_chat
            try:
                await kind(client, rng, tally)
            except (httpx.HTTPError, json.JSONDecodeError) as error:
                tally.fail(f"{kind.__name__}: {type(error).__name__}: {error}")


class ConfigFolder:
    """The config.json and graphs the soaked server serves, and the edits made to them mid-run."""

    def __init__(self, root: Path, model: Path, prefix_caching: bool) -> None:
        self.root = root
        template = (REPO_ROOT / "graphs" / "llm.pbtxt").read_text()
        caching = "true" if prefix_caching else "false"
        self.graph = template.replace('models_path: "smollm2"',
                                      f'models_path: "{model}"\n      enable_prefix_caching: {caching}')
        for name in ("chat", "chat-b"):
            (root / name).mkdir(parents=True, exist_ok=True)
            (root / name / "graph.pbtxt").write_text(self.graph)
        self.write(["chat"])

    def write(self, names: list[str]) -> None:
        (self.root / "config.json").write_text(json.dumps({"mediapipe_config_list": [{"name": n} for n in names]}))

    def edit_and_add(self) -> None:
        (self.root / "chat" / "graph.pbtxt").write_text(self.graph.replace('name: "detokenize"', 'name: "detok"'))
        self.write(["chat", "chat-b"])

    def remove(self) -> None:
        self.write(["chat"])


async def sample_memory(pid: int, every: float, until: float, samples: list[dict[str, Any]], started: float) -> None:
    while time.monotonic() < until:
        samples.append({"t_s": round(time.monotonic() - started), **peers.ovserve_memory(pid)})
        await asyncio.sleep(every)


async def wait_status(base_url: str, condition: Any, timeout: float = 120) -> dict[str, Any]:
    """``/v1/config`` once ``condition`` holds for it."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        while True:
            status = (await client.get("/v1/config")).json()
            if condition(status) or time.monotonic() > deadline:
                return status
            await asyncio.sleep(0.5)


def serving(status: dict[str, Any]) -> dict[str, list[str]]:
    return {name: [f"{v['version']} {v['state']}" for v in entry["model_version_status"]]
            for name, entry in status.items()}


async def soak(args: argparse.Namespace, base_url: str, pid: int, folder: ConfigFolder) -> dict[str, Any]:
    started = time.monotonic()
    until = started + args.minutes * 60
    tally, samples, events = Tally(), [], []
    memory = asyncio.ensure_future(sample_memory(pid, args.sample_every, until + 1, samples, started))
    clients = [asyncio.ensure_future(client_loop(base_url, seed, until, (args.disconnect_share, args.malformed_share),
                                                 tally)) for seed in range(args.streams)]
    await asyncio.sleep(args.minutes * 60 * 0.4)
    folder.edit_and_add()
    status = await wait_status(base_url, lambda s: "chat-b" in s and any(
        v["state"] == "AVAILABLE" for v in s["chat-b"]["model_version_status"]))
    events.append({"t_s": round(time.monotonic() - started), "what": "graph of chat edited, chat-b added",
                   "status": serving(status)})
    await asyncio.sleep(max(0.0, started + args.minutes * 60 * 0.7 - time.monotonic()))
    folder.remove()
    status = await wait_status(base_url, lambda s: all(
        v["state"] == "END" for v in s.get("chat-b", {}).get("model_version_status", [{"state": "?"}])))
    events.append({"t_s": round(time.monotonic() - started), "what": "chat-b removed", "status": serving(status)})
    await asyncio.gather(*clients)
    await memory
    seconds = time.monotonic() - started
    phase = await disconnects_under_load(base_url, pid, rounds=args.disconnect_rounds)
    return {"tally": tally, "samples": samples, "events": events, "seconds": seconds, "disconnect_phase": phase}


async def health(base_url: str) -> dict[str, Any]:
    """After the run: readiness, a plain chat, and the server's own counters."""
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        ready = (await client.get("/v2/health/ready")).status_code
        chat = await client.post("/v3/chat/completions", json={
            "model": "chat", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8})
        for _ in range(50):  # a request is counted out just after its last byte: give it a moment
            metrics = (await client.get("/metrics")).text
            if "ovserve_requests_in_flight 0.0" in metrics:
                break
            await asyncio.sleep(0.1)
    wanted = ("ovserve_requests_in_flight", "ovserve_engine_starts_total", "ovserve_engine_hangs_total",
              "ovserve_config_reloads_total", "ovserve_config_reload_failures_total")
    counters = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.splitlines()
                if line.startswith(wanted)}
    return {"ready": ready, "chat_after": chat.status_code, "counters": counters}


def report(args: argparse.Namespace, result: dict[str, Any], after: dict[str, Any]) -> str:
    tally: Tally = result["tally"]
    samples = result["samples"]
    warm = next((s for s in samples if s["t_s"] >= args.warmup), samples[0])
    end = samples[-1]
    rows = [[key, warm[key], end[key], max(s[key] or 0 for s in samples)] for key in
            ("server_rss_mib", "engine_rss_mib", "tree_rss_mib")]
    lines = [
        f"Soak: {args.minutes:g} min, {args.streams} streams, {args.disconnect_share:.0%} disconnects, "
        f"{args.malformed_share:.0%} malformed, prefix caching {args.prefix_caching}; {result['seconds']:.0f} s "
        f"measured.", "",
        markdown(["outcome", "requests"], [[k, v] for k, v in sorted(tally.outcomes.items())]), "",
        f"Unexpected errors: {tally.outcomes['unexpected']}; tokens streamed in completed chats: {tally.tokens}.", "",
        markdown(["memory (MiB)", f"start (t={warm['t_s']} s)", f"end (t={end['t_s']} s)", "max"], rows), "",
        *[f"- t={e['t_s']} s: {e['what']}: {e['status']}" for e in result["events"]], "",
        describe(result["disconnect_phase"]), "",
        f"After: readiness {after['ready']}, a chat {after['chat_after']}, counters {after['counters']}.",
    ]
    if tally.unexpected:
        lines += ["", "Unexpected:", *[f"- {what}" for what in tally.unexpected]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--disconnect-share", type=float, default=0.10)
    parser.add_argument("--malformed-share", type=float, default=0.05)
    parser.add_argument("--disconnect-rounds", type=int, default=10,
                        help="rounds of the last phase: one long stream while three others drop (0: skip it)")
    parser.add_argument("--sample-every", type=float, default=15, help="seconds between memory samples")
    parser.add_argument("--warmup", type=float, default=30, help="seconds before the 'start' memory sample")
    parser.add_argument("--prefix-caching", choices=("true", "false"), default="true",
                        help="the engine's enable_prefix_caching (default: %(default)s, as ovserve serve MODEL)")
    parser.add_argument("--model", type=Path, default=MODEL_PATH)
    parser.add_argument("--ovserve-bin", default="ovserve")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = ConfigFolder(args.out / f"soak-{stamp}-config", args.model.resolve(),
                          args.prefix_caching == "true")
    port = peers.free_port()
    argv = [str(peers.resolve_ovserve(args.ovserve_bin)), "serve", "--config", str(folder.root / "config.json"),
            "--port", str(port)]
    base_url = f"http://{peers.HOST}:{port}"
    log = args.out / f"soak-{stamp}.log"
    spec = peers.ServerSpec("ovserve-soak", argv, base_url, f"{base_url}/v2/health/ready", log)
    with peers.running(spec) as server:
        result = asyncio.run(soak(args, spec.base_url, server.pid, folder))
        after = asyncio.run(health(spec.base_url))
    text = report(args, result, after)
    print(text)
    (args.out / f"soak-{stamp}.md").write_text(text + "\n")
    (args.out / f"soak-{stamp}.json").write_text(json.dumps({
        "outcomes": result["tally"].outcomes, "unexpected": result["tally"].unexpected, "samples": result["samples"],
        "events": result["events"], "after": after, "disconnect_phase": result["disconnect_phase"]}, indent=1))
    return 1 if result["tally"].outcomes["unexpected"] or not idle(result["disconnect_phase"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
