"""Reporting: machine facts, the markdown table, ratio lines and the PNG plot."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

#: Packages whose versions go into the results (missing ones are recorded as None).
PACKAGES = ("ovserve", "openvino", "openvino-genai", "openvino-tokenizers", "numpy", "aiohttp", "matplotlib")

#: (numerator, denominator) pairs for the ratio lines.
RATIO_PAIRS = (("ovserve", "engine"), ("ovserve", "llama-server"), ("llama-server", "engine"),
               ("ovserve-batch-invariant", "ovserve"))

_COLUMNS = (
    ("tok/s", "tokens_per_s"),
    ("req/s", "requests_per_s"),
    ("TTFT p50 ms", "ttft_p50_ms"),
    ("TTFT p99 ms", "ttft_p99_ms"),
    ("ITL p50 ms", "itl_p50_ms"),
    ("ITL p99 ms", "itl_p99_ms"),
    ("tok/req", "mean_tokens_per_request"),
    ("errors", "errors"),
    ("client CPU s", "client_cpu_s"),
)


def _cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


#: CPU flags that matter for these engines (recorded when present).
_CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx_vnni")


def _cpu_flags() -> list[str]:
    """The interesting CPU flags from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                return [flag for flag in _CPU_FLAGS if flag in present]
    except OSError:
        pass
    return []


def _mem_total_gib() -> float | None:
    """Total memory in GiB from /proc/meminfo."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError):
        pass
    return None


def _package_version(name: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_commit(repo: Path) -> str | None:
    """HEAD of the repo (None before the first commit or without git)."""
    try:
        result = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def machine_info(repo: Path) -> dict[str, Any]:
    """Facts about the machine and the software, recorded with every run."""
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "mem_total_gib": _mem_total_gib(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _package_version(name) for name in PACKAGES},
        "git_commit": _git_commit(repo),
    }


def _fmt(value: Any) -> str:
    """A table cell."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def markdown_table(targets: list[dict[str, Any]]) -> str:
    """Rows target x concurrency; skipped targets and levels appear as rows with the reason."""
    header = "| target | conc | " + " | ".join(title for title, _ in _COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(_COLUMNS) + 2)]
    for target in targets:
        rows = [(lv["concurrency"], lv) for lv in target.get("levels", [])]
        rows += [(sk["concurrency"], sk) for sk in target.get("skipped_levels", [])]
        if not target.get("levels"):
            reason = target.get("reason") or "no level measured"
            lines.append(f"| {target['name']} | — | {target['status']}: {_short(reason)} |")
            continue
        for concurrency, row in sorted(rows, key=lambda item: item[0]):
            if "reason" in row:
                lines.append(f"| {target['name']} | {concurrency} | skipped: {_short(row['reason'])} |")
            else:
                cells = " | ".join(_fmt(row.get(key)) for _, key in _COLUMNS)
                lines.append(f"| {target['name']} | {concurrency} | {cells} |")
    return "\n".join(lines)


def _short(text: str, limit: int = 160) -> str:
    """One line, at most ``limit`` characters, safe inside a table cell."""
    line = " ".join(text.split()).replace("|", "/")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _levels_by_concurrency(targets: list[dict[str, Any]], name: str) -> dict[int, dict[str, Any]]:
    """The measured levels of one target, keyed by concurrency."""
    for target in targets:
        if target["name"] == name:
            return {lv["concurrency"]: lv for lv in target.get("levels", [])}
    return {}


def _ratio(num: float | None, den: float | None) -> str:
    """num/den formatted as '0.85x', or 'n/a'."""
    if num is None or not den:
        return "n/a"
    return f"{num / den:.2f}x"


def ratio_lines(targets: list[dict[str, Any]]) -> list[str]:
    """'A / B at N streams: tok/s 0.85x, TTFT p50 1.20x, ITL p50 1.05x' for each pair and common concurrency."""
    lines = []
    for num_name, den_name in RATIO_PAIRS:
        num, den = _levels_by_concurrency(targets, num_name), _levels_by_concurrency(targets, den_name)
        common = sorted(set(num) & set(den))
        if not common:
            lines.append(f"- {num_name} / {den_name}: n/a (not both measured)")
            continue
        for c in common:
            tok = _ratio(num[c]["tokens_per_s"], den[c]["tokens_per_s"])
            ttft = _ratio(num[c]["ttft_p50_ms"], den[c]["ttft_p50_ms"])
            itl = _ratio(num[c]["itl_p50_ms"], den[c]["itl_p50_ms"])
            lines.append(f"- {num_name} / {den_name} at {c} streams: tok/s {tok}, TTFT p50 {ttft}, ITL p50 {itl}")
    return lines


def ovserve_lines(targets: list[dict[str, Any]]) -> list[str]:
    """ovserve's own facts: start-up, event-loop lag per level, memory soak, calculator cost, and the
    inter-token latency at one stream against llama-server's."""
    ovserve = next((t for t in targets if t["name"] == "ovserve"), None)
    if ovserve is None:
        return []
    info = ovserve.get("info", {})
    lines = []
    if info.get("ready_s"):
        lines.append(f"- ovserve serve to ready: {', '.join(f'{s:.1f} s' for s in info['ready_s'])} (model fetched)")
    for level in sorted(ovserve.get("levels", []), key=lambda lv: lv["concurrency"]):
        extra = level.get("extra", {})
        if extra.get("event_loop_lag_p99_ms") is not None:
            lines.append(f"- ovserve HTTP event loop lag at {level['concurrency']} streams: p50 "
                         f"{extra['event_loop_lag_p50_ms']} ms, p99 {extra['event_loop_lag_p99_ms']} ms")
    soak = info.get("soak")
    if soak:
        lines.append(f"- ovserve memory over {soak['requests']} requests after {soak['warmup_requests']} warm-up: "
                     f"{soak['rss_after_warmup_mib']} -> {soak['rss_after_mib']} MiB ({soak['growth_pct']:+.2f}%), "
                     f"{soak['errors']} errors")
    cost = info.get("calculator_cost")
    if cost:
        lines.append(f"- ovserve per-token calculators: {cost['cpu_us_per_token_1_per_delta']} µs CPU per token "
                     f"(one token per delta), {cost['cpu_us_per_token_4_per_delta']} µs (four per delta); "
                     f"byte-table detokenizer: {cost['fast_detokenizer']}")
    ours = _levels_by_concurrency(targets, "ovserve").get(1)
    theirs = _levels_by_concurrency(targets, "llama-server").get(1)
    if ours and theirs:
        lines.append(f"- inter-token latency p50 at 1 stream: ovserve {ours['itl_p50_ms']} ms, "
                     f"llama-server {theirs['itl_p50_ms']} ms")
    return lines


def plot(targets: list[dict[str, Any]], path: Path, title: str) -> Path | None:
    """Two panels (throughput and TTFT p50 vs concurrency), one line per target. None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (ax_tok, ax_ttft) = plt.subplots(1, 2, figsize=(11, 4.5))
    ticks: set[int] = set()
    for target in targets:
        levels = sorted(target.get("levels", []), key=lambda lv: lv["concurrency"])
        if not levels:
            continue
        xs = [lv["concurrency"] for lv in levels]
        ticks.update(xs)
        ax_tok.plot(xs, [lv["tokens_per_s"] for lv in levels], marker="o", label=target["name"])
        ttft = [(lv["concurrency"], lv["ttft_p50_ms"]) for lv in levels if lv["ttft_p50_ms"] is not None]
        ax_ttft.plot([x for x, _ in ttft], [y for _, y in ttft], marker="o", label=target["name"])
    for ax, ylabel in ((ax_tok, "output tokens/s"), (ax_ttft, "time to first token p50 (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(ticks) or [1])
        ax.set_xticklabels([str(t) for t in sorted(ticks)] or ["1"])
        ax.set_xlabel("concurrent streams")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend()
    ax_tok.set_ylim(bottom=0)
    ax_ttft.set_yscale("log")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
