"""The fused-projections IR variant of the step A/B: projections that read the same input become one matrix and a
split, with the same outputs; a model without such projections is refused."""

import numpy as np
import openvino as ov
import pytest
from openvino import opset13 as ops

from benchmarks import fuse_projections
from tests.tiny_models import QWEN3_RERANKER

HIDDEN = 64


def _u4(values: np.ndarray) -> ov.op.Constant:
    tensor = ov.Tensor(ov.Type.u4, ov.Shape(list(values.shape)))
    flat = values.reshape(-1).astype(np.uint8)
    tensor.data[:] = flat[0::2] | (flat[1::2] << 4)
    return ov.op.Constant(tensor)


def _projection(source: ov.Output, rows: int, rng: np.random.Generator) -> ov.Node:
    """A projection with u4 weights in groups of 32, built as GenAI builds a Q4 GGUF's."""
    groups = HIDDEN // 32
    weights = ops.convert(_u4(rng.integers(0, 16, (rows, groups, 32))), ov.Type.f16)
    zeros = ops.convert(_u4(rng.integers(0, 16, (rows, groups, 1))), ov.Type.f16)
    scales = ops.constant(rng.uniform(0.01, 0.1, (rows, groups, 1)).astype(np.float16))
    matrix = ops.reshape(ops.multiply(ops.subtract(weights, zeros), scales),
                         ops.constant(np.array([rows, HIDDEN], np.int64)), False)
    return ops.matmul(source, ops.convert(matrix, ov.Type.f32), False, True)


def _model() -> ov.Model:
    rng = np.random.default_rng(0)
    hidden = ops.parameter([1, -1, HIDDEN], ov.Type.f32, name="hidden")
    outputs = [_projection(hidden.output(0), rows, rng) for rows in (64, 32, 32)]
    return ov.Model([ops.result(node) for node in outputs], [hidden])


def _run(model: ov.Model, values: np.ndarray) -> list[np.ndarray]:
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled({"hidden": values})
    return [result[output] for output in compiled.outputs]


def test_three_projections_of_one_input_become_one_matrix_with_the_same_outputs():
    values = np.random.default_rng(1).standard_normal((1, 3, HIDDEN)).astype(np.float32)
    before = _run(_model(), values)
    model = _model()
    assert fuse_projections.fuse(model) == 1
    assert sum(op.get_type_name() == "MatMul" for op in model.get_ops()) == 1
    after = _run(model, values)
    assert [a.shape for a in after] == [(1, 3, 64), (1, 3, 32), (1, 3, 32)]
    for a, b in zip(after, before, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_a_model_without_u4_projections_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="nothing to fuse"):
        fuse_projections.main([str(QWEN3_RERANKER), str(tmp_path / "out")])
