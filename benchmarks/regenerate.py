"""Regenerate docs/performance.md's figures with one command: every workload, one after the other, on this machine.

Usage::

    python -m benchmarks.regenerate [--ovserve-bin .venv/bin/ovserve] [--out DIR] [--docs docs/performance.md]
                                    [--steps closed,openloop,long,multiturn,mix,prefix-cost,prompt-lookup]
                                    [--no-build] [--render-only]

Steps, each a child process writing its JSON into ``--out`` (default ``benchmarks/results/regen-<stamp>``):

1. ``closed``: ``benchmarks.run`` with the bare engine, ovserve and llama-server at 1, 4, 16 and 64 streams
   (llama-server is built from the llama-cpp-python sdist on first use, about 15 minutes on 2 cores);
2. ``openloop``: Poisson arrivals at 50%, 70% and 90% of the saturation rate that step 1 measured, on ovserve
   and on the bare engine;
3. ``long``: ~2,000 and ~6,000-token prompts on ovserve, then the same prompts on llama-server;
4. ``multiturn``, ``mix``, ``prefix-cost``, ``prompt-lookup``: as ``benchmarks.workloads`` runs them.

Then the section between the markers in ``--docs`` is replaced (benchmarks/performance_doc.py): the machine with
its CPU flags, every target with its measured figure, and each step's table; the closed loop's plot is copied
beside the document as ``performance.png``. A step that fails is reported in the section, not hidden.
``--render-only --out DIR`` rewrites the section from a finished run's results without running anything. About
75 minutes on 2 cores once llama-server is built.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import performance_doc

REPO_ROOT = Path(__file__).resolve().parents[1]
STEPS = ("closed", "openloop", "long", "multiturn", "mix", "prefix-cost", "prompt-lookup")
#: The open-loop rates, as shares of the saturation rate.
OPENLOOP_LOADS = (0.5, performance_doc.TARGET_LOAD, 0.9)
#: Bound on one step (the closed loop with a llama-server build is the longest).
STEP_TIMEOUT_S = 3 * 3600
#: How long a timed-out step has to stop its servers after SIGTERM.
STOP_GRACE_S = 60


def step_argv(step: str, args: argparse.Namespace, saturation_rps: float | None) -> list[str]:
    """The command line of one step."""
    common = ["--out", str(args.out), "--ovserve-bin", args.ovserve_bin]
    if step == "closed":
        return ["-m", "benchmarks.run", *common, "--only", "engine,ovserve,llama-server", "--soak-requests", "0",
                *(["--no-build"] if args.no_build else [])]
    tail: list[str] = []
    if step == "openloop":
        rates = ",".join(f"{saturation_rps * load:.2f}" for load in OPENLOOP_LOADS) if saturation_rps else "1,2,3"
        tail = ["--targets", "ovserve,engine", "--rates", rates, "--duration", str(args.openloop_duration),
                *(["--saturation-rps", str(saturation_rps)] if saturation_rps else [])]
    elif step == "long":
        tail = ["--llama-server", *(["--no-build"] if args.no_build else [])]
    return ["-m", "benchmarks.workloads", step, *common, *tail]


def newest(out: Path, step: str, since: float) -> Path | None:
    """The JSON a step wrote into ``out`` (the newest of its prefix, written after ``since``)."""
    prefix = "results" if step == "closed" else step
    found = [p for p in out.glob(f"{prefix}-*.json") if p.stat().st_mtime >= since]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def run_step(step: str, args: argparse.Namespace, saturation_rps: float | None) -> dict[str, Any] | str:
    """Run one step; its results, or why it failed."""
    argv = [sys.executable, *step_argv(step, args, saturation_rps)]
    log = args.out / f"regenerate-{step}.log"
    print(f"[regenerate] {step}: {' '.join(argv[1:])} (log {log})", flush=True)
    started = time.time()
    with log.open("wb") as out:
        child = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            returncode = child.wait(STEP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.terminate()  # SIGTERM: the step stops the servers it started on the way out
            try:
                child.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            return f"timed out after {STEP_TIMEOUT_S} s (log {log})"
    path = newest(args.out, step, started)
    if returncode != 0 or path is None:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        return f"exit {returncode}: {tail[0][:300]} (log {log})"
    print(f"[regenerate] {step}: done in {(time.time() - started) / 60:.1f} min, {path.name}", flush=True)
    return json.loads(path.read_text())


def saturation_of(closed: dict[str, Any] | None, max_tokens: int = 128) -> float | None:
    """The saturation rate: the bare engine's tok/s at 64 streams / the tokens per request."""
    level = performance_doc.closed_level(closed or {}, "engine", 64)
    return round(level["tokens_per_s"] / max_tokens, 3) if level else None


def write_docs(args: argparse.Namespace, results: dict[str, dict[str, Any]], failures: dict[str, str],
               minutes: float) -> None:
    """Replace the generated section of ``--docs`` and copy the closed loop's plot beside it."""
    plot_name = None
    plots = sorted(args.out.glob("results-*.png"))
    if "closed" in results and plots:
        plot_name = "performance.png"
        shutil.copyfile(plots[-1], args.docs.parent / plot_name)
    section = performance_doc.section(results, minutes, plot_name)
    if failures:
        section += "\n\n**Steps that failed in this run:**\n\n" + "\n".join(
            f"- `{step}`: {why}" for step, why in failures.items())
    args.docs.write_text(performance_doc.replace_section(args.docs.read_text(), section))
    print(f"[regenerate] wrote {args.docs}" + (f" and {plot_name}" if plot_name else ""), flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.regenerate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / f"regen-{stamp}")
    parser.add_argument("--docs", type=Path, default=REPO_ROOT / "docs" / "performance.md")
    parser.add_argument("--ovserve-bin", default=str(Path(sys.executable).parent / "ovserve"))
    parser.add_argument("--steps", default=",".join(STEPS), help=f"a subset of {','.join(STEPS)}")
    parser.add_argument("--openloop-duration", type=float, default=120.0, help="seconds of arrivals per rate")
    parser.add_argument("--no-build", action="store_true", help="fail the llama-server parts rather than build it")
    parser.add_argument("--render-only", action="store_true",
                        help="run nothing: rewrite the section from the results already in --out")
    args = parser.parse_args(argv)
    args.steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = sorted(set(args.steps) - set(STEPS))
    if unknown:
        parser.error(f"unknown steps {', '.join(unknown)}; the steps are {', '.join(STEPS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the steps, then rewrite the document's generated section; 1 if any step failed."""
    args = parse_args(argv)
    args.out = args.out.resolve()
    try:  # before an hour of runs, not after
        performance_doc.replace_section(args.docs.read_text(), "")
    except (OSError, ValueError) as error:
        print(f"[regenerate] cannot write {args.docs}: {error}", file=sys.stderr)
        return 2
    if args.render_only:
        return render(args)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}
    for step in args.steps:
        outcome = run_step(step, args, saturation_of(results.get("closed")))
        if isinstance(outcome, str):
            print(f"[regenerate] {step} failed: {outcome}", file=sys.stderr, flush=True)
            failures[step] = outcome
        else:
            results[step] = outcome
    minutes = (time.monotonic() - started) / 60
    (args.out / SUMMARY).write_text(json.dumps({"steps": args.steps, "failures": failures, "minutes": minutes}))
    if results:
        write_docs(args, results, failures, minutes)
    return 1 if failures else 0


#: What a run leaves in --out for --render-only: its steps, failures and duration.
SUMMARY = "regenerate.json"


def render(args: argparse.Namespace) -> int:
    """Rewrite the section from a finished run's results in ``--out``."""
    try:
        summary = json.loads((args.out / SUMMARY).read_text())
    except (OSError, ValueError) as error:
        print(f"[regenerate] no finished run in {args.out}: {error}", file=sys.stderr)
        return 2
    results = {step: json.loads(path.read_text()) for step in summary["steps"]
               if (path := newest(args.out, step, 0)) is not None and step not in summary["failures"]}
    write_docs(args, results, summary["failures"], summary["minutes"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
