"""The u4 output-projection variant of the step A/B: its packing and requantization, and its refusal of a model whose
output projection is not u8."""

import numpy as np
import pytest

from benchmarks import lm_head_u4
from tests.tiny_models import QWEN3_RERANKER


def test_u4_values_are_packed_low_nibble_first():
    assert lm_head_u4._pack_u4(np.array([1, 2, 3, 15])).tolist() == [0x21, 0xF3]


def test_requantizing_keeps_each_group_within_half_a_u4_step():
    rng = np.random.default_rng(0)
    weights = rng.integers(0, 256, size=(4, 3, 32), dtype=np.uint8)
    zero = rng.integers(100, 156, size=(4, 3, 1), dtype=np.uint8)
    scale = rng.uniform(0.001, 0.01, size=(4, 3, 1)).astype(np.float16)
    quant, zero4, step = lm_head_u4.requantize(weights, zero, scale)
    assert quant.max() <= 15 and zero4.max() <= 15
    real = (weights.astype(np.float32) - zero) * scale.astype(np.float32)
    back = (quant.astype(np.float32) - zero4) * step.astype(np.float32)
    assert np.all(np.abs(back - real) <= step.astype(np.float32) * 0.51 + np.abs(real).max() * 1e-3)


def test_a_model_without_a_u8_output_projection_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="not u8"):
        lm_head_u4.main([str(QWEN3_RERANKER), str(tmp_path / "out")])
