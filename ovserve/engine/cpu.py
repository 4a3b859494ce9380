"""What the CPU can do, and the OpenVINO CPU plugin settings ovserve picks for it.

OpenVINO's ``OPTIMIZATION_CAPABILITIES`` says whether the CPU has BF16, but not its vector ISA, so the
kind is read from the CPU flags (``/proc/cpuinfo``). The kind decides two sets of plugin properties:

- the **defaults** (:data:`DEFAULTS`): the fastest settings measured or known for the kind;
- the **batch-invariant** settings (:data:`BATCH_INVARIANT`): those under which a request's greedy
  output does not depend on which other requests share its engine steps.

The tables, and why each value is what it is, are in the README ("CPU settings"). The project's machines and
CI are of three kinds, and every test must hold on each:

- AMD EPYC with AVX2 only: :attr:`CPUKind.AVX2`, f32 inference;
- AMD EPYC with AVX-512 and BF16: :attr:`CPUKind.AVX512_BF16`, bf16 inference;
- Intel Xeon with AVX-512 and VNNI, without BF16: :attr:`CPUKind.AVX512`, f32 inference.
"""

from __future__ import annotations

import enum
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


class CPUKind(enum.Enum):
    """The x86 vector ISA levels whose OpenVINO kernels differ in speed and arithmetic."""

    #: Intel AMX tiles with BF16 (Sapphire Rapids and later): bf16 matrix units.
    AMX = "amx"
    #: AVX-512 with the BF16 instructions (AMD Zen 4 and later, Intel Cooper Lake): bf16 inference.
    AVX512_BF16 = "avx512_bf16"
    #: AVX-512 without BF16 (Intel Skylake-SP to Ice Lake): f32 inference.
    AVX512 = "avx512"
    #: AVX2 without AVX-512 (most desktop CPUs, AMD Zen 1 to 3): f32 inference.
    AVX2 = "avx2"
    #: None of those, or flags that cannot be read (another architecture or OS).
    OTHER = "other"


@dataclass(frozen=True)
class CPUInfo:
    """The CPU kind and the flags it was read from."""

    kind: CPUKind
    #: The flags that decided the kind (those of :data:`KIND_FLAGS` the CPU has).
    flags: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.kind.value} (flags: {' '.join(self.flags) or 'none of ' + ' '.join(KIND_FLAGS)})"


#: The CPU flags that decide the kind, as Linux names them in /proc/cpuinfo.
KIND_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")

PRECISION = "INFERENCE_PRECISION_HINT"
KV_CACHE = "KV_CACHE_PRECISION"
DYNAMIC_QUANTIZATION = "DYNAMIC_QUANTIZATION_GROUP_SIZE"

#: ovserve's CPU plugin defaults by kind; a graph's or the command line's plugin_config overrides them.
#: - inference precision: bf16 where the CPU computes in bf16 natively (AVX-512 BF16, AMX), else f32
#:   (what OpenVINO picks too; said explicitly so the log shows it);
#: - KV cache f16: as fast as OpenVINO's u8 default on AVX2, and it loads with bf16 inference on
#:   AVX-512 BF16 (f32 does not, bf16 crashes the plugin on AVX2);
#: - dynamic quantization in groups of 32 (OpenVINO's default): 306 against 256 tok/s at 16 streams
#:   with it off, on AVX2.
DEFAULTS: Mapping[CPUKind, Mapping[str, str]] = {
    CPUKind.AMX: {PRECISION: "bf16", KV_CACHE: "f16", DYNAMIC_QUANTIZATION: "32"},
    CPUKind.AVX512_BF16: {PRECISION: "bf16", KV_CACHE: "f16", DYNAMIC_QUANTIZATION: "32"},
    CPUKind.AVX512: {PRECISION: "f32", KV_CACHE: "f16", DYNAMIC_QUANTIZATION: "32"},
    CPUKind.AVX2: {PRECISION: "f32", KV_CACHE: "f16", DYNAMIC_QUANTIZATION: "32"},
    CPUKind.OTHER: {KV_CACHE: "f16"},
}

#: What makes greedy output independent of the batch, by kind. Measured on AVX-512 BF16 (16 prompts,
#: 48 tokens): only all three together gave 16/16 identical answers; any one or two of them 4-10/16.
#: bf16 inference rounds differently with the batch's shape, dynamic quantization quantizes
#: activations, and a reduced-precision KV cache is read back rounded. AVX512 and AMX take the same
#: all-f32 settings, which switch off the only lower-precision paths they add. CPUKind.OTHER has no
#: entry: the mode refuses to start there.
BATCH_INVARIANT: Mapping[CPUKind, Mapping[str, str]] = {
    kind: {PRECISION: "f32", KV_CACHE: "f32", DYNAMIC_QUANTIZATION: "0"}
    for kind in (CPUKind.AMX, CPUKind.AVX512_BF16, CPUKind.AVX512, CPUKind.AVX2)
}


def cpu_kind(flags: set[str] | frozenset[str]) -> CPUKind:
    """The kind of a CPU with these flags (Linux names)."""
    if {"amx_tile", "amx_bf16"} <= flags:
        return CPUKind.AMX
    if {"avx512f", "avx512_bf16"} <= flags:
        return CPUKind.AVX512_BF16
    if "avx512f" in flags:
        return CPUKind.AVX512
    if "avx2" in flags:
        return CPUKind.AVX2
    return CPUKind.OTHER


def read_cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The flags of the first CPU in ``cpuinfo`` (empty where there is no such file)."""
    try:
        with cpuinfo.open() as lines:
            for line in lines:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def detect_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> CPUInfo:
    """This machine's CPU kind (``OTHER`` off x86 Linux)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return CPUInfo(CPUKind.OTHER, ())
    flags = read_cpu_flags(cpuinfo)
    return CPUInfo(cpu_kind(flags), tuple(f for f in KIND_FLAGS if f in flags))
