"""The CPU kind, read from the CPU's flags."""

import pytest

from ovserve.engine.cpu import CPUKind, cpu_kind, detect_cpu, read_cpu_flags


@pytest.mark.parametrize(
    ("flags", "kind"),
    [
        ("fpu sse4_2 avx avx2 fma", CPUKind.AVX2),
        ("avx2 avx512f avx512bw avx512_vnni", CPUKind.AVX512),
        ("avx2 avx512f avx512_vnni avx512_bf16", CPUKind.AVX512_BF16),
        ("avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8", CPUKind.AMX),
        ("fpu sse4_2 avx", CPUKind.OTHER),
        ("", CPUKind.OTHER),
    ],
)
def test_the_kind_is_the_best_isa_level_the_flags_name(flags, kind):
    assert cpu_kind(set(flags.split())) is kind


def test_flags_are_read_from_the_first_processor(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\n"
                       "processor\t: 1\nflags\t\t: fpu\n")
    assert read_cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512f", "avx512_bf16"}
    assert read_cpu_flags(tmp_path / "missing") == frozenset()


def test_this_machine_has_a_kind_and_says_which_flags_decided_it():
    cpu = detect_cpu()
    assert cpu.kind.value in cpu.describe()
    assert set(cpu.flags) <= read_cpu_flags()
