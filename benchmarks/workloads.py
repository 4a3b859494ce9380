"""Workloads beside benchmarks/run.py's closed loop: open-loop arrivals, long prompts, multi-turn sessions,
a realistic length mix, and the cost of prefix caching.

Usage::

    python -m benchmarks.workloads openloop --rates 1,2,3 --duration 120 [--targets ovserve,engine]
                                            [--saturation-rps R | --measure-saturation]
    python -m benchmarks.workloads long [--prompt-tokens 2000,6000] [--concurrency 1,4] [--llama-server]
    python -m benchmarks.workloads multiturn [--sessions 8] [--concurrency 4] [--turns 4] [--prefix-caching true,false]
    python -m benchmarks.workloads mix [--requests 64] [--concurrency 4,16] [--rates 1,2 --duration 120]
    python -m benchmarks.workloads prefix-cost [--concurrency 16] [--rounds 1]
    python -m benchmarks.workloads prompt-lookup [--requests 8] [--concurrency 1,4]
    python -m benchmarks.workloads speculative [--requests 8] [--concurrency 1,4] [--rounds 1]

(the same as ``python -m benchmarks.run --workload NAME ...``). Each one starts ``ovserve serve --model
GGUF --model-name smollm2`` on 127.0.0.1 and a free port (``--server-args`` adds flags; multiturn and
prefix-cost start one server with ``--enable-prefix-caching true`` and one with ``false``, prompt-lookup one
without and one with ``--plugin_config '{"prompt_lookup": true}'``, speculative one without and one with
``--draft-model`` the served model itself), or uses a
running server given with ``--base-url``. Writes ``<workload>-<stamp>.json`` and ``<workload>-<stamp>.md``
into ``--out`` with the servers' logs in ``logs-<stamp>/``. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks import (
    length_mix,
    long_prompts,
    multiturn,
    openloop,
    peers,
    prefix_cost,
    prompt_lookup,
    report,
    speculative,
)
from benchmarks.openloop import Slo, parse_float_list
from benchmarks.workload import MODEL_PATH, parse_int_list

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ("openloop", "long", "multiturn", "mix", "prefix-cost", "prompt-lookup", "speculative")
#: Pause after stopping a server so that its shutdown does not reach into the next measurement.
SETTLE_S = 2.0


# --------------------------------------------------------------------------- servers


@contextlib.contextmanager
def ovserve(args: argparse.Namespace, log_dir: Path, name: str,
            extra: tuple[str, ...] = ()) -> Iterator[tuple[str, int | None]]:
    """Yield (base URL, server pid): ``--base-url`` as given (pid None), else a started ``ovserve serve``."""
    if args.base_url:
        yield args.base_url.rstrip("/"), None
        return
    executable = peers.resolve_ovserve(args.ovserve_bin)
    spec = peers.ovserve_spec(executable, args.model, log_dir, name, (*shlex.split(args.server_args), *extra))
    print(f"[workloads] starting {' '.join(spec.argv)}", flush=True)
    with peers.running(spec) as server:
        yield spec.base_url, server.pid
    time.sleep(SETTLE_S)


def caching_variants(args: argparse.Namespace) -> list[tuple[str, tuple[str, ...]]]:
    """(label, extra server flags) per ``--prefix-caching`` value; one unlabeled variant with --base-url."""
    if args.base_url:
        return [("given server", ())]
    return [(f"prefix caching {'on' if on else 'off'}", ("--enable-prefix-caching", "true" if on else "false"))
            for on in args.prefix_caching]


def _server_name(workload: str, label: str) -> str:
    """A log-file name for one server of one workload."""
    return f"ovserve-{workload}-" + label.replace("prefix caching ", "caching-").replace(" ", "-")


# --------------------------------------------------------------------------- the workloads


def _saturation(args: argparse.Namespace, log_dir: Path) -> dict[str, Any] | None:
    """The saturation rate: given, measured, or from the newest run.py results in --out."""
    if args.saturation_rps:
        return {"rps": args.saturation_rps, "source": "given (--saturation-rps)"}
    if args.measure_saturation:
        print("[workloads] measuring the engine at 64 streams for the saturation rate", flush=True)
        return openloop.measure_saturation(args.model, args.max_tokens, log_dir)
    return openloop.saturation_from_results(args.out, args.max_tokens)


def _engine_openloop(args: argparse.Namespace, log_dir: Path) -> list[dict[str, Any]]:
    """The open-loop rates on the bare engine, in a child process (its memory is gone afterwards)."""
    json_out, log_path = log_dir / "openloop-engine.json", log_dir / "openloop-engine.log"
    argv = [sys.executable, "-m", "benchmarks.openloop", "engine", "--model", str(args.model),
            "--rates", ",".join(f"{r:g}" for r in args.rates), "--duration", str(args.duration),
            "--max-tokens", str(args.max_tokens), "--seed", str(args.seed), "--drain", str(args.drain),
            "--slo-ttft-ms", str(args.slo_ttft_ms), "--slo-itl-ms", str(args.slo_itl_ms),
            "--scheduler", args.engine_scheduler, "--json-out", str(json_out)]
    timeout = len(args.rates) * (args.duration + args.drain + 120) + 300
    print(f"[workloads] engine: {' '.join(argv[1:])} (log {log_path})", flush=True)
    with log_path.open("wb") as log:
        done = subprocess.run(argv, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, check=False)
    if done.returncode != 0 or not json_out.is_file():
        raise RuntimeError(f"the engine run failed (exit {done.returncode}): {peers.log_tail(log_path, 5)}")
    rows = json.loads(json_out.read_text())["rows"]
    for row in rows:
        openloop.print_row(row)
    return rows


def _describe_saturation(saturation: dict[str, Any], max_tokens: int) -> str:
    """The saturation line of the report."""
    if "engine_tokens_per_s" not in saturation:
        return f"{saturation['rps']} req/s, {saturation['source']}"
    return (f"{saturation['rps']} req/s = engine {saturation['engine_tokens_per_s']} tok/s at "
            f"{openloop.SATURATION_STREAMS} streams / {max_tokens} tokens ({saturation['source']})")


def run_openloop(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    """Poisson arrivals at every rate, on each target."""
    cfg = openloop.config_from_args(args)
    saturation = _saturation(args, log_dir)
    rows: list[dict[str, Any]] = []
    for target in args.targets:
        if target == "engine":
            rows += _engine_openloop(args, log_dir)
            continue
        with ovserve(args, log_dir, "ovserve-openloop") as (url, _pid):
            rows += asyncio.run(openloop.run_http(url, cfg))
    rps = saturation["rps"] if saturation else None
    notes = [f"Goodput: requests per second of the {cfg.duration_s:g} s arrival window that met the SLOs "
             f"({cfg.slo.describe()}); 'within SLO' is their share of the requests sent.",
             "Saturation: " + (_describe_saturation(saturation, cfg.max_tokens) if saturation else
                               "not available (give --saturation-rps, or --measure-saturation)")]
    return {"config": {**asdict(cfg), "slo": cfg.slo.describe(), "targets": args.targets}, "saturation": saturation,
            "rows": rows, "table": openloop.table(rows, rps), "notes": notes}


def run_long(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    """Long prompts against one server."""
    cfg = long_prompts.LongConfig(tuple(args.prompt_tokens), tuple(args.concurrency), args.requests_per_client,
                                  args.max_tokens)
    with ovserve(args, log_dir, "ovserve-long") as (url, _pid):
        result = asyncio.run(long_prompts.run(url, cfg))
        tables = [long_prompts.table("ovserve", result)]
        try:
            peer = _long_on_llama_server(args, cfg, url, log_dir) if args.llama_server else None
        except peers.PeerError as error:  # ovserve's figures stand without the peer's
            print(f"[workloads] long on llama-server failed: {error}", file=sys.stderr, flush=True)
            return {"config": asdict(cfg), "result": result, "table": tables[0],
                    "notes": [f"llama-server was not measured: {error}"]}
    if peer is None:
        return {"config": asdict(cfg), "result": result, "table": tables[0], "notes": []}
    tables.append(long_prompts.table("llama-server", peer))
    notes = ["llama-server got the same prompts (cut with ovserve's tokenizer of the same .gguf), with "
             f"{max(cfg.concurrency)} slots of {LONG_CTX_PER_SLOT} tokens."]
    return {"config": asdict(cfg), "result": result, "llama_server": peer, "table": "\n\n".join(tables),
            "notes": notes}


#: Context per llama-server slot for the long prompts (the default model's whole context).
LONG_CTX_PER_SLOT = 8192


def _long_on_llama_server(args: argparse.Namespace, cfg: long_prompts.LongConfig, tokenizer_url: str,
                          log_dir: Path) -> dict[str, Any]:
    """The same long prompts against llama-server, cut with the running ovserve's tokenizer."""
    binary = peers.resolve_llama_server(args.llama_server_bin, build=not args.no_build)
    spec = peers.llama_server_spec(binary, args.model, max(cfg.concurrency), log_dir, LONG_CTX_PER_SLOT)
    print(f"[workloads] starting {' '.join(spec.argv)}", flush=True)
    with peers.running(spec):
        return asyncio.run(long_prompts.run(spec.base_url, cfg, tokenizer_url=tokenizer_url))


def run_multiturn(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    """The sessions against each prefix-caching variant, one server after the other."""
    cfg = multiturn.MultiTurnConfig(args.sessions, args.concurrency, args.turns, args.system_words, args.max_tokens)
    rows = []
    for label, extra in caching_variants(args):
        with ovserve(args, log_dir, _server_name("multiturn", label), extra) as (url, _pid):
            print(f"[multiturn] {label}", flush=True)
            result = asyncio.run(multiturn.run(url, cfg))
        print(f"[multiturn] {label}: turn 1 TTFT p50 {result['turn_1']['ttft_p50_ms']} ms, later turns "
              f"{result['later_turns']['ttft_p50_ms']} ms, errors {result['errors']}", flush=True)
        rows.append((label, result))
    return {"config": asdict(cfg), "servers": dict(rows), "table": multiturn.table(rows), "notes": []}


def run_mix(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    """The length mix against one server."""
    defaults = length_mix.MixConfig()
    cfg = length_mix.MixConfig(
        requests=args.requests, seed=args.seed, concurrency=tuple(args.concurrency), rates=tuple(args.rates or ()),
        duration_s=args.duration, drain_s=args.drain, slo=Slo(args.slo_ttft_ms / 1000, args.slo_itl_ms / 1000),
        prompt=length_mix.LengthDist(defaults.prompt.mean, defaults.prompt.std, 4, args.max_prompt_tokens),
        output=length_mix.LengthDist(defaults.output.mean, defaults.output.std, 4, args.max_output_tokens))
    with ovserve(args, log_dir, "ovserve-mix") as (url, _pid):
        result = asyncio.run(length_mix.run(url, cfg))
    tables = [length_mix.table("ovserve", result)]
    if result["rates"]:
        tables.append(openloop.table(result["rates"], None))
    sampled = result["sampled"]
    notes = [f"Sampled lengths: prompt mean {sampled['prompt_mean']} / median {sampled['prompt_median']} tokens, "
             f"output mean {sampled['output_mean']} / median {sampled['output_median']} "
             f"(LMSYS-Chat-1M: prompt 69.5 ± 143.4, response 214.5 ± 226.7); the server's prompt tokens add the "
             "chat template's.", f"SLOs: {cfg.slo.describe()}."]
    return {"config": {**asdict(cfg), "slo": cfg.slo.describe()}, "result": result, "table": "\n\n".join(tables),
            "notes": notes}


def run_prefix_cost(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    """Short distinct prompts against each prefix-caching variant, ``--rounds`` times in turn."""
    cfg = prefix_cost.PrefixCostConfig(args.concurrency, args.requests_per_client, args.max_tokens)
    rows = []
    for number in range(args.rounds):
        for label, extra in caching_variants(args):
            name = label if args.rounds == 1 else f"{label}, round {number + 1}"
            with ovserve(args, log_dir, _server_name("prefix-cost", label), extra) as (url, pid):
                result = asyncio.run(prefix_cost.run(url, cfg, pid))
            print(f"[prefix-cost] {name}: {result['tokens_per_s']} tok/s, TTFT p50 {result['ttft_p50_ms']} ms, "
                  f"engine RSS {result['memory_idle'].get('engine_rss_mib')} -> "
                  f"{result['memory_after'].get('engine_rss_mib')} MiB, errors {result['errors']}", flush=True)
            rows.append((name, result))
    return {"config": asdict(cfg), "servers": dict(rows), "table": prefix_cost.table(rows), "notes": []}


def run_prompt_lookup(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    """Copying, code and open-ended tasks against a server without prompt lookup, then one with it."""
    cfg = prompt_lookup.PromptLookupConfig(args.requests, tuple(args.concurrency), args.max_tokens)
    variants = [("given server", ())] if args.base_url else list(prompt_lookup.VARIANTS)
    rows = []
    for label, extra in variants:
        with ovserve(args, log_dir, "ovserve-prompt-lookup-" + label.split()[-1], extra) as (url, _pid):
            print(f"[prompt-lookup] {label}", flush=True)
            rows.append((label, asyncio.run(prompt_lookup.run(url, cfg))))
    notes = ["Greedy, streamed, no ignore_eos: each answer ends where the model ends it (at most "
             f"{cfg.max_tokens} tokens). Per token: each request's (latency - TTFT) / (tokens - 1), p50."]
    return {"config": asdict(cfg), "servers": dict(rows), "table": prompt_lookup.table(rows), "notes": notes}


def run_speculative(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    """Open-ended and copying tasks against a server without a draft model, then one with the model as its own draft,
    ``--rounds`` times in turn."""
    cfg = prompt_lookup.PromptLookupConfig(args.requests, tuple(args.concurrency), args.max_tokens)
    variants = [("given server", ())] if args.base_url else list(speculative.variants(str(args.model)))
    rows = []
    for number in range(args.rounds):
        for label, extra in variants:
            name = label if args.rounds == 1 else f"{label}, round {number + 1}"
            with ovserve(args, log_dir, "ovserve-speculative-" + label.split()[1], extra) as (url, _pid):
                print(f"[speculative] {name}", flush=True)
                rows.append((name, asyncio.run(speculative.run(url, cfg))))
    notes = ["The model is its own draft: an upper bound on acceptance, and no speed-up to expect (the draft costs "
             "as much as the model). Greedy, streamed, no ignore_eos: each answer ends where the model ends it (at "
             f"most {cfg.max_tokens} tokens). Acceptance at one stream: (tokens a step - 1) / "
             f"{speculative.NUM_ASSISTANT_TOKENS}, prefill steps included."]
    return {"config": asdict(cfg), "servers": dict(rows), "table": speculative.table(rows), "notes": notes}


RUNNERS: dict[str, Callable[[argparse.Namespace, Path], dict[str, Any]]] = {
    "openloop": run_openloop,
    "long": run_long,
    "multiturn": run_multiturn,
    "mix": run_mix,
    "prefix-cost": run_prefix_cost,
    "prompt-lookup": run_prompt_lookup,
    "speculative": run_speculative,
}


# --------------------------------------------------------------------------- command line


def _bool_list(text: str) -> list[bool]:
    """Parse ``true,false``."""
    values = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not values or any(v not in ("true", "false") for v in values):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of true/false, got {text!r}")
    return [v == "true" for v in values]


def _targets(text: str) -> list[str]:
    """Parse ``--targets ovserve,engine``."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names or any(n not in ("ovserve", "engine") for n in names):
        raise argparse.ArgumentTypeError(f"targets are ovserve and engine, got {text!r}")
    return names


def _levels_or_none(text: str) -> list[int]:
    """Parse stream counts, or ``none`` for no closed-loop levels."""
    return [] if text.strip().lower() == "none" else parse_int_list(text)


def _common(parser: argparse.ArgumentParser) -> None:
    """Options every workload takes."""
    parser.add_argument("--model", type=Path, default=MODEL_PATH, help="the .gguf to serve")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    parser.add_argument("--ovserve-bin", default="ovserve",
                        help="ovserve executable (default: on PATH or beside python)")
    parser.add_argument("--server-args", default="", metavar="'FLAGS'",
                        help="extra flags for ovserve serve, one string, e.g. '--max-num-batched-tokens 512'")
    parser.add_argument("--base-url", default=None,
                        help="use this running server (e.g. http://127.0.0.1:8000/v3) instead of starting one")
    parser.add_argument("--seed", type=int, default=0)


def _slo(parser: argparse.ArgumentParser) -> None:
    """The service-level objectives."""
    parser.add_argument("--slo-ttft-ms", type=float, default=1000.0, help="first-token objective (default 1000)")
    parser.add_argument("--slo-itl-ms", type=float, default=50.0, help="mean inter-token objective (default 50)")


def _add_openloop(sub: Any) -> None:
    """The openloop subcommand."""
    p = sub.add_parser("openloop", help="Poisson arrivals at given rates; goodput under SLOs")
    _common(p)
    _slo(p)
    p.add_argument("--rates", type=parse_float_list, default=[1.0, 2.0, 3.0], help="requests/s (default 1,2,3)")
    p.add_argument("--duration", type=float, default=120.0, help="seconds of arrivals per rate (default 120)")
    p.add_argument("--drain", type=float, default=120.0, help="seconds to wait for requests after the last arrival")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--targets", type=_targets, default=["ovserve"], help="ovserve, engine or both (default ovserve)")
    p.add_argument("--engine-scheduler", default="{}", metavar="JSON", help="scheduler fields for the engine target")
    p.add_argument("--saturation-rps", type=float, default=None, help="the saturation rate, if known")
    p.add_argument("--measure-saturation", action="store_true",
                   help="measure it (engine, 64 streams; about a minute and a half on 2 cores)")


def _add_long(sub: Any) -> None:
    """The long subcommand."""
    p = sub.add_parser("long", help="TTFT with ~2,000 and ~6,000-token prompts")
    _common(p)
    p.add_argument("--prompt-tokens", type=parse_int_list, default=[2000, 6000])
    p.add_argument("--concurrency", type=parse_int_list, default=[1, 4])
    p.add_argument("--requests-per-client", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--llama-server", action="store_true", help="also run the same prompts against llama-server")
    p.add_argument("--llama-server-bin", default=None, help=f"or ${peers.LLAMA_SERVER_ENV}")
    p.add_argument("--no-build", action="store_true", help="fail rather than build a missing llama-server")


def _add_multiturn(sub: Any) -> None:
    """The multiturn subcommand."""
    p = sub.add_parser("multiturn", help="sessions sharing a long system prompt, prefix caching on and off")
    _common(p)
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--concurrency", type=int, default=4, help="sessions at a time")
    p.add_argument("--turns", type=int, default=4)
    p.add_argument("--system-words", type=int, default=1200)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--prefix-caching", type=_bool_list, default=[True, False],
                   help="servers to run (default true,false)")


def _add_mix(sub: Any) -> None:
    """The mix subcommand."""
    p = sub.add_parser("mix", help="prompt/output lengths sampled from LMSYS-Chat-1M's statistics")
    _common(p)
    _slo(p)
    p.add_argument("--requests", type=int, default=64, help="requests per closed-loop level")
    p.add_argument("--concurrency", type=_levels_or_none, default=[4, 16],
                   help="closed-loop stream counts ('none' for open-loop only)")
    p.add_argument("--rates", type=parse_float_list, default=None, help="also open-loop at these rates")
    p.add_argument("--duration", type=float, default=120.0, help="seconds of arrivals per rate")
    p.add_argument("--drain", type=float, default=300.0)
    p.add_argument("--max-prompt-tokens", type=int, default=2048)
    p.add_argument("--max-output-tokens", type=int, default=1024)


def _add_prefix_cost(sub: Any) -> None:
    """The prefix-cost subcommand."""
    p = sub.add_parser("prefix-cost", help="short distinct prompts, prefix caching on and off: speed and memory")
    _common(p)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--requests-per-client", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--rounds", type=int, default=1, help="repeat the pair of servers, in turn")
    p.add_argument("--prefix-caching", type=_bool_list, default=[False, True],
                   help="servers to run (default false,true)")


def _add_prompt_lookup(sub: Any) -> None:
    """The prompt-lookup subcommand."""
    p = sub.add_parser("prompt-lookup", help="copying, code and open-ended tasks, prompt lookup off and on")
    _common(p)
    p.add_argument("--requests", type=int, default=8, help="requests per kind and stream count")
    p.add_argument("--concurrency", type=parse_int_list, default=[1, 4])
    p.add_argument("--max-tokens", type=int, default=256)


def _add_speculative(sub: Any) -> None:
    """The speculative subcommand."""
    p = sub.add_parser("speculative", help="open-ended and copying tasks, a draft model off and on")
    _common(p)
    p.add_argument("--requests", type=int, default=8, help="requests per kind and stream count")
    p.add_argument("--concurrency", type=parse_int_list, default=[1, 4])
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--rounds", type=int, default=1, help="repeat the pair of servers, in turn")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.workloads", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="workload", required=True)
    for add in (_add_openloop, _add_long, _add_multiturn, _add_mix, _add_prefix_cost, _add_prompt_lookup,
                _add_speculative):
        add(sub)
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- output


def write_outputs(out_dir: Path, stamp: str, workload: str, results: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``<workload>-<stamp>.json`` and ``.md``; return their paths."""
    base = out_dir / f"{workload}-{stamp}"
    json_path, md_path = base.with_suffix(".json"), base.with_suffix(".md")
    json_path.write_text(json.dumps(results, indent=2))
    machine = results["machine"]
    header = (f"{workload}: {Path(results['model']).name}, {machine['nproc']} cores {machine['cpu_model']}, "
              f"load {machine['loadavg_at_start']}, {machine['date']}")
    md_path.write_text("\n\n".join([header, results["table"], *results["notes"]]) + "\n")
    return json_path, md_path


def _raise_on_sigterm(signum: int, _frame: object) -> None:
    """Turn SIGTERM into SystemExit so that every started server is stopped on the way out."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Run one workload, print its table, write its JSON and markdown."""
    args = parse_args(argv)
    args.model = args.model.resolve()
    args.out = args.out.resolve()
    if not args.base_url and not args.model.is_file():
        print(f"model not found: {args.model} (pass --model PATH.gguf)", file=sys.stderr)
        return 2
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    log_dir = args.out / f"logs-{stamp}"
    log_dir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    machine = report.machine_info(REPO_ROOT)
    print(f"[workloads] {args.workload}: {machine['nproc']} cores, {machine['cpu_model']}, "
          f"load {machine['loadavg_at_start']}", flush=True)
    started = time.monotonic()
    try:
        results = RUNNERS[args.workload](args, log_dir)
    except (peers.PeerError, RuntimeError, subprocess.SubprocessError, OSError) as exc:
        print(f"[workloads] {args.workload} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    results.update(workload=args.workload, machine=machine, model=str(args.model), base_url=args.base_url,
                   server_args=args.server_args, elapsed_s=round(time.monotonic() - started, 1),
                   loadavg_at_end=[round(x, 2) for x in os.getloadavg()])
    paths = write_outputs(args.out, stamp, args.workload, results)
    print("\n" + results["table"] + "\n\n" + "\n".join(results["notes"]))
    print("\n[workloads] wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
