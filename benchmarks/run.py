"""The one benchmark command: every target, one after the other, on the same workload.

Usage::

    python -m benchmarks.run [--concurrency 1,4,16,64] [--requests-per-client N] [--max-tokens 128]
                             [--only engine,ovserve,llama-server,llama-cpp-python] [--out benchmarks/results]

Targets:

* ``engine``: ContinuousBatchingPipeline driven in-process (benchmarks/engine_direct.py), the ceiling;
  run in a child process so that its memory and threads are gone before the servers start.
* ``ovserve``: ``ovserve serve`` (``--ovserve-bin``, default ``ovserve`` on PATH).
* ``llama-server``: llama.cpp's C++ server, 16 slots up to 16 streams, 64 slots above.
* ``llama-cpp-python``: its OpenAI server; it serves one request at a time, so levels above
  ``--llama-cpp-python-max-concurrency`` (default 16) are skipped.

Writes ``results-<stamp>.json`` (machine info, config, every target's levels or why it was skipped),
``results-<stamp>.md`` (the table) and ``results-<stamp>.png`` (the plot) into ``--out``, with the
servers' logs in ``logs-<stamp>/``.

``--workload openloop|long|multiturn|mix|prefix-cost|prompt-lookup`` runs one of the other workloads instead
(benchmarks/workloads.py; the options after it are that workload's, see
``python -m benchmarks.run --workload openloop --help``). The default, ``closed``, is the run above.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import calculators, peers, report, server_metrics
from benchmarks.loadgen import LoadConfig, run_level
from benchmarks.workload import MODEL_PATH, PROMPTS, default_requests_per_client, parse_int_list

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("engine", "ovserve", "ovserve-batch-invariant", "llama-server", "llama-cpp-python")
#: Targets a run includes unless ``--only`` names them (the cost of an ovserve mode, not a peer).
OPT_IN_TARGETS = ("ovserve-batch-invariant",)
#: Pause between servers so that one's shutdown does not eat into the next one's numbers.
SETTLE_S = 2.0
LOOP_LAG = "ovserve_event_loop_lag_seconds"
#: The memory soak: short requests, 16 at a time, after a warm-up.
SOAK_MAX_TOKENS = 16
SOAK_CONCURRENCY = 16
SOAK_WARMUP = 256
#: ``--workload``: this command's closed loop (the default) or one of benchmarks/workloads.py's.
WORKLOADS = ("closed", "openloop", "long", "multiturn", "mix", "prefix-cost", "prompt-lookup", "speculative")


@dataclass(frozen=True)
class RunConfig:
    """Everything one run needs, from the command line."""

    model: Path
    levels: tuple[int, ...]
    requests_per_client: int | None
    max_tokens: int
    out_dir: Path
    log_dir: Path
    llama_server_bin: str | None
    llama_cpp_python: str | None
    ovserve_bin: str
    llama_cpp_python_max_concurrency: int
    llama_server_prompt_cache: bool
    build: bool
    level_timeout_s: float
    soak_requests: int

    def rpc(self, concurrency: int) -> int:
        """Requests per client at one level."""
        return self.requests_per_client or default_requests_per_client(concurrency)


@dataclass(frozen=True)
class RequestShape:
    """Per-target request fields: whether to send ``ignore_eos`` and extra body fields."""

    ignore_eos: bool = True
    extra_body: tuple[tuple[str, object], ...] = ()


def _target(name: str) -> dict[str, Any]:
    """An empty target record."""
    return {"name": name, "status": "ok", "reason": "", "levels": [], "skipped_levels": [], "info": {}}


def _finish_status(target: dict[str, Any]) -> dict[str, Any]:
    """Set the status from what was measured: ok, partial, or skipped."""
    if target["status"] == "ok" and not target["levels"]:
        target["status"] = "skipped"
        target["reason"] = target["reason"] or "; ".join(sk["reason"] for sk in target["skipped_levels"][:1])
    elif target["status"] == "ok" and target["skipped_levels"]:
        target["status"] = "partial"
    return target


def _print_level(name: str, level: dict[str, Any]) -> None:
    """One progress line per measured level."""
    print(
        f"[run] {name} c={level['concurrency']}: {level['tokens_per_s']} tok/s, "
        f"TTFT p50 {level['ttft_p50_ms']} ms, ITL p50 {level['itl_p50_ms']} ms, "
        f"errors {level['errors']}{' (' + level['first_error'][:120] + ')' if level['errors'] else ''}",
        flush=True,
    )


# --------------------------------------------------------------------------- engine


def run_engine(cfg: RunConfig) -> dict[str, Any]:
    """The in-process engine benchmark, in a child process with its output in a log file."""
    target = _target("engine")
    json_out = cfg.log_dir / "engine.json"
    log_path = cfg.log_dir / "engine.log"
    argv = [
        sys.executable,
        "-m",
        "benchmarks.engine_direct",
        "--model",
        str(cfg.model),
        "--concurrency",
        ",".join(map(str, cfg.levels)),
        "--max-tokens",
        str(cfg.max_tokens),
        "--json-out",
        str(json_out),
    ]
    if cfg.requests_per_client:
        argv += ["--requests-per-client", str(cfg.requests_per_client)]
    timeout = cfg.level_timeout_s * len(cfg.levels) + 300
    print(f"[run] engine: {' '.join(argv[1:])}", flush=True)
    with log_path.open("wb") as log:
        try:
            result = subprocess.run(
                argv, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            return {**target, "status": "failed", "reason": f"timed out after {timeout:.0f}s"}
    if result.returncode != 0 or not json_out.is_file():
        tail = peers.log_tail(log_path, 5)
        return {**target, "status": "failed", "reason": f"exit {result.returncode}: {tail}"}
    data = json.loads(json_out.read_text())
    target["levels"] = data["levels"]
    target["info"] = {"load_s": data["load_s"], "log": str(log_path)}
    for level in target["levels"]:
        _print_level("engine", level)
    return _finish_status(target)


# --------------------------------------------------------------------------- HTTP servers


class ServerProbe:
    """Extra measurements around a server's levels (ovserve reports its own event-loop lag)."""

    def before_level(self, server: peers.RunningServer) -> Any:
        return None

    def after_level(self, server: peers.RunningServer, before: Any, result: dict[str, Any]) -> None:
        pass

    def after_levels(self, server: peers.RunningServer, cfg: RunConfig, target: dict[str, Any]) -> None:
        pass


def _measure_group(
    name: str,
    spec: peers.ServerSpec,
    levels: list[int],
    cfg: RunConfig,
    target: dict[str, Any],
    shape: RequestShape,
    probe: ServerProbe | None = None,
) -> None:
    """Start one server, run the given levels against it, stop it; skips recorded in ``target``."""
    probe = probe or ServerProbe()
    try:
        with peers.running(spec) as server:
            target["info"].setdefault("ready_s", []).append(round(server.ready_s, 2))
            for concurrency in levels:
                load = LoadConfig(
                    base_url=spec.base_url,
                    max_tokens=cfg.max_tokens,
                    ignore_eos=shape.ignore_eos,
                    extra_body=shape.extra_body,
                    level_timeout_s=cfg.level_timeout_s,
                )
                before = probe.before_level(server)
                result = asyncio.run(run_level(concurrency, cfg.rpc(concurrency), load)).to_dict()
                result["extra"]["server"] = spec.name
                probe.after_level(server, before, result)
                target["levels"].append(result)
                _print_level(name, result)
            probe.after_levels(server, cfg, target)
    except peers.PeerError as exc:
        print(f"[run] {name}: {exc}", flush=True)
        measured = {lv["concurrency"] for lv in target["levels"]}
        for concurrency in levels:
            if concurrency not in measured:
                target["skipped_levels"].append({"concurrency": concurrency, "reason": str(exc)})
    time.sleep(SETTLE_S)


def _run_http(
    name: str,
    groups: Callable[[], list[tuple[peers.ServerSpec, list[int]]]],
    cfg: RunConfig,
    target: dict[str, Any],
    shape: RequestShape,
    probe: ServerProbe | None = None,
) -> dict[str, Any]:
    """Resolve the server (``groups`` may raise PeerError), then measure every group."""
    target["info"]["request_fields"] = {"ignore_eos": shape.ignore_eos, **dict(shape.extra_body)}
    try:
        plan = groups()
    except peers.PeerError as exc:
        print(f"[run] {name}: skipped: {exc}", flush=True)
        return {**target, "status": "skipped", "reason": str(exc)}
    for spec, levels in plan:
        _measure_group(name, spec, levels, cfg, target, shape, probe)
    return _finish_status(target)


def run_llama_server(cfg: RunConfig) -> dict[str, Any]:
    """llama-server, restarted with 16 or 64 slots as the concurrency needs."""
    target = _target("llama-server")

    def groups() -> list[tuple[peers.ServerSpec, list[int]]]:
        binary = peers.resolve_llama_server(cfg.llama_server_bin, build=cfg.build)
        target["info"].update(binary=str(binary), version=peers.tool_version([str(binary), "--version"]))
        by_slots: dict[int, list[int]] = {}
        for concurrency in cfg.levels:
            by_slots.setdefault(peers.llama_server_slots(concurrency), []).append(concurrency)
        return [(peers.llama_server_spec(binary, cfg.model, slots, cfg.log_dir), lv) for slots, lv in by_slots.items()]

    # cache_prompt on by default, as ovserve serve and the engine target reuse repeated prompts with prefix
    # caching; --no-llama-server-prompt-cache prefills them again.
    shape = RequestShape(True, (("cache_prompt", cfg.llama_server_prompt_cache),))
    return _run_http("llama-server", groups, cfg, target, shape)


def run_llama_cpp_python(cfg: RunConfig) -> dict[str, Any]:
    """llama-cpp-python's server, levels above the cap skipped (one request at a time)."""
    target = _target("llama-cpp-python")
    cap = cfg.llama_cpp_python_max_concurrency
    levels = [c for c in cfg.levels if c <= cap]
    for concurrency in cfg.levels:
        if concurrency > cap:
            reason = (
                f"serves one request at a time; levels above {cap} streams are skipped "
                "(--llama-cpp-python-max-concurrency)"
            )
            target["skipped_levels"].append({"concurrency": concurrency, "reason": reason})

    def groups() -> list[tuple[peers.ServerSpec, list[int]]]:
        if not levels:
            return []
        python = peers.resolve_llama_cpp_python(cfg.llama_cpp_python, install=cfg.build)
        version = peers.tool_version([str(python), "-c", "import llama_cpp; print('version', llama_cpp.__version__)"])
        target["info"].update(python=str(python), version=version)
        return [(peers.llama_cpp_python_spec(python, cfg.model, cfg.log_dir), levels)]

    # It has no ignore_eos: the prompts ask for long answers instead (check tok/req).
    return _run_http("llama-cpp-python", groups, cfg, target, RequestShape(ignore_eos=False))


class OvserveProbe(ServerProbe):
    """ovserve's HTTP event-loop lag during each level (from its /metrics histogram), then a soak:
    server memory (HTTP and engine processes) across many short requests after a warm-up."""

    def before_level(self, server: peers.RunningServer) -> Any:
        return server_metrics.histogram(_metrics_url(server), LOOP_LAG)

    def after_level(self, server: peers.RunningServer, before: Any, result: dict[str, Any]) -> None:
        after = server_metrics.histogram(_metrics_url(server), LOOP_LAG)
        for q in (50, 99):
            value = server_metrics.quantile(before, after, q / 100)
            result["extra"][f"event_loop_lag_p{q}_ms"] = None if value is None else round(value * 1000, 2)
        print(f"[run] ovserve c={result['concurrency']}: event loop lag p50 "
              f"{result['extra']['event_loop_lag_p50_ms']} ms, p99 {result['extra']['event_loop_lag_p99_ms']} ms",
              flush=True)

    def after_levels(self, server: peers.RunningServer, cfg: RunConfig, target: dict[str, Any]) -> None:
        if cfg.soak_requests <= 0:
            return
        load = LoadConfig(base_url=server.spec.base_url, max_tokens=SOAK_MAX_TOKENS,
                          level_timeout_s=cfg.level_timeout_s)
        asyncio.run(run_level(SOAK_CONCURRENCY, SOAK_WARMUP // SOAK_CONCURRENCY, load))
        warm = server.rss_mib()
        result = asyncio.run(run_level(SOAK_CONCURRENCY, cfg.soak_requests // SOAK_CONCURRENCY, load))
        after = server.rss_mib()
        soak = {"warmup_requests": SOAK_WARMUP, "requests": result.requests, "errors": result.errors,
                "max_tokens": SOAK_MAX_TOKENS, "concurrency": SOAK_CONCURRENCY,
                "rss_after_warmup_mib": round(warm, 1), "rss_after_mib": round(after, 1),
                "growth_pct": round((after - warm) / warm * 100, 2)}
        target["info"]["soak"] = soak
        print(f"[run] ovserve soak: {soak['requests']} requests, {soak['errors']} errors, memory "
              f"{soak['rss_after_warmup_mib']} -> {soak['rss_after_mib']} MiB ({soak['growth_pct']:+.2f}%)", flush=True)


def _metrics_url(server: peers.RunningServer) -> str:
    return server.spec.base_url.rsplit("/", 1)[0] + "/metrics"


def run_ovserve(cfg: RunConfig) -> dict[str, Any]:
    """ovserve serve, one server for every level; then the per-token cost of its own calculators."""
    target = _target("ovserve")

    def groups() -> list[tuple[peers.ServerSpec, list[int]]]:
        executable = peers.resolve_ovserve(cfg.ovserve_bin)
        target["info"]["executable"] = str(executable)
        return [(peers.ovserve_spec(executable, cfg.model, cfg.log_dir), list(cfg.levels))]

    result = _run_http("ovserve", groups, cfg, target, RequestShape(), OvserveProbe())
    cost = asyncio.run(calculators.measure(cfg.model))
    target["info"]["calculator_cost"] = cost
    print(f"[run] ovserve per-token calculators: {cost['cpu_us_per_token_1_per_delta']} µs CPU per token "
          f"(1 token per delta), {cost['cpu_us_per_token_4_per_delta']} µs (4 per delta)", flush=True)
    return result


def run_ovserve_batch_invariant(cfg: RunConfig) -> dict[str, Any]:
    """ovserve serve --batch-invariant: what the mode costs against the ovserve target."""
    name = "ovserve-batch-invariant"
    target = _target(name)

    def groups() -> list[tuple[peers.ServerSpec, list[int]]]:
        executable = peers.resolve_ovserve(cfg.ovserve_bin)
        spec = peers.ovserve_spec(executable, cfg.model, cfg.log_dir, name, ("--batch-invariant",))
        return [(spec, list(cfg.levels))]

    return _run_http(name, groups, cfg, target, RequestShape())


RUNNERS: dict[str, Callable[[RunConfig], dict[str, Any]]] = {
    "engine": run_engine,
    "ovserve": run_ovserve,
    "ovserve-batch-invariant": run_ovserve_batch_invariant,
    "llama-server": run_llama_server,
    "llama-cpp-python": run_llama_cpp_python,
}


# --------------------------------------------------------------------------- command line


def _parse_only(text: str) -> list[str]:
    """Parse --only, keeping the canonical order."""
    names = {part.strip() for part in text.split(",") if part.strip()}
    unknown = names - set(TARGETS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown targets {sorted(unknown)}; choose from {', '.join(TARGETS)}")
    return [name for name in TARGETS if name in names]


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", type=Path, default=MODEL_PATH, help="the .gguf every target serves")
    parser.add_argument("--concurrency", type=parse_int_list, default=[1, 4, 16, 64], help="default 1,4,16,64")
    parser.add_argument(
        "--requests-per-client",
        type=int,
        default=None,
        help="requests each stream runs back to back (default: 4 up to 4 streams, else 2)",
    )
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--only", type=_parse_only, default=[t for t in TARGETS if t not in OPT_IN_TARGETS],
                        help=f"comma-separated targets (default: all but {', '.join(OPT_IN_TARGETS)})")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    parser.add_argument("--llama-server-bin", default=None, help=f"or ${peers.LLAMA_SERVER_ENV}")
    parser.add_argument(
        "--llama-cpp-python",
        default=None,
        help=f"python of a venv with llama-cpp-python[server] (or ${peers.LLAMA_CPP_PYTHON_ENV})",
    )
    parser.add_argument("--ovserve-bin", default="ovserve", help="ovserve executable (default: on PATH)")
    parser.add_argument("--llama-cpp-python-max-concurrency", type=int, default=16)
    parser.add_argument(
        "--llama-server-prompt-cache",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="let llama-server reuse the KV of repeated prompts, its default, as ovserve serve and the engine "
             "target reuse them with prefix caching (--no-llama-server-prompt-cache: cache_prompt false)",
    )
    parser.add_argument("--no-build", action="store_true", help="skip peers that are missing instead of building them")
    parser.add_argument("--level-timeout", type=float, default=1800.0, help="bound on one level, seconds")
    parser.add_argument("--soak-requests", type=int, default=2000,
                        help="ovserve memory soak: requests after a warm-up (0 skips it)")
    parser.add_argument("--workload", choices=WORKLOADS, default="closed",
                        help="closed (the default: the run described above), or another workload of "
                             "benchmarks/workloads.py, which then takes the other options (--workload NAME --help)")
    return parser.parse_args(argv)


def _split_workload(argv: list[str]) -> tuple[str, list[str]]:
    """Take ``--workload NAME`` out of the command line: (the workload, the other arguments)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--workload", choices=WORKLOADS, default="closed")
    known, rest = parser.parse_known_args(argv)
    return known.workload, rest


def _config(args: argparse.Namespace, stamp: str) -> RunConfig:
    """Build the RunConfig from parsed arguments."""
    out_dir = args.out.resolve()
    return RunConfig(
        model=args.model.resolve(),
        levels=tuple(args.concurrency),
        requests_per_client=args.requests_per_client,
        max_tokens=args.max_tokens,
        out_dir=out_dir,
        log_dir=out_dir / f"logs-{stamp}",
        llama_server_bin=args.llama_server_bin,
        llama_cpp_python=args.llama_cpp_python,
        ovserve_bin=args.ovserve_bin,
        llama_cpp_python_max_concurrency=args.llama_cpp_python_max_concurrency,
        build=not args.no_build,
        llama_server_prompt_cache=args.llama_server_prompt_cache,
        level_timeout_s=args.level_timeout,
        soak_requests=args.soak_requests,
    )


def _raise_on_sigterm(signum: int, _frame: object) -> None:
    """Turn SIGTERM into SystemExit so that every started server is stopped on the way out."""
    raise SystemExit(128 + signum)


def _write_outputs(cfg: RunConfig, stamp: str, results: dict[str, Any]) -> tuple[Path, Path, Path | None]:
    """Write the JSON, the markdown and the plot; return their paths."""
    base = cfg.out_dir / f"results-{stamp}"
    json_path = base.with_suffix(".json")
    json_path.write_text(json.dumps(results, indent=2))
    md_path = base.with_suffix(".md")
    md_path.write_text(results["table"] + "\n\n" + "\n".join(results["ratios"]) + "\n")
    machine = results["machine"]
    title = (
        f"SmolLM2-135M Q4_1 GGUF, {cfg.max_tokens} output tokens, greedy — {machine['nproc']} cores "
        f"{machine['cpu_model']} — {machine['date']}"
    )
    png_path = report.plot(results["targets"], base.with_suffix(".png"), title)
    return json_path, md_path, png_path


def main(argv: list[str] | None = None) -> int:
    """Run the selected targets, print the table and ratios, write JSON/markdown/PNG (or another workload)."""
    argv = sys.argv[1:] if argv is None else argv
    workload, rest = _split_workload(argv)
    if workload != "closed":
        from benchmarks import workloads

        return workloads.main([workload, *rest])
    args = _parse_args(argv)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    cfg = _config(args, stamp)
    if not cfg.model.is_file():
        print(f"model not found: {cfg.model} (pass --model PATH.gguf)", file=sys.stderr)
        return 2
    cfg.log_dir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    machine = report.machine_info(REPO_ROOT)
    print(
        f"[run] {machine['nproc']} cores, {machine['cpu_model']}, load {machine['loadavg_at_start']}",
        flush=True,
    )
    targets = []
    for name in args.only:
        started = time.monotonic()
        try:
            target = RUNNERS[name](cfg)
        except Exception as exc:  # one target's failure must not lose the others' results
            print(f"[run] {name} failed: {type(exc).__name__}: {exc}", flush=True)
            target = {**_target(name), "status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
        target["info"]["elapsed_s"] = round(time.monotonic() - started, 1)
        targets.append(target)
    results = {
        "machine": machine,
        "config": {
            "model": str(cfg.model),
            "concurrency": list(cfg.levels),
            "max_tokens": cfg.max_tokens,
            "requests_per_client": {c: cfg.rpc(c) for c in cfg.levels},
            "prompts": list(PROMPTS),
            "targets": args.only,
            "llama_cpp_python_max_concurrency": cfg.llama_cpp_python_max_concurrency,
            "llama_server_prompt_cache": cfg.llama_server_prompt_cache,
        },
        "targets": targets,
        "table": report.markdown_table(targets),
        "ratios": report.ratio_lines(targets) + report.ovserve_lines(targets),
    }
    paths = _write_outputs(cfg, stamp, results)
    print("\n" + results["table"] + "\n\n" + "\n".join(results["ratios"]))
    print("\n[run] wrote " + ", ".join(str(p) for p in paths if p))
    return 0


if __name__ == "__main__":
    sys.exit(main())
