"""An IR variant for the step A/B: the output projection's weights requantized from u8 to u4 (groups of 32,
asymmetric), the embedding lookup left on the u8 table they share. It halves the bytes the logits read a step,
and changes the logits (it is a measurement, not a format ovserve offers).

Usage::

    python -m benchmarks.lm_head_u4 IR_FOLDER OUT_FOLDER
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np


def _pack_u4(values: np.ndarray) -> np.ndarray:
    """u4 values (0..15) packed two a byte, the first in the low nibble (OpenVINO's order)."""
    flat = values.reshape(-1).astype(np.uint8)
    return (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8)


def _u4_constant(values: np.ndarray) -> Any:
    """An OpenVINO u4 Constant of ``values`` (0..15)."""
    import openvino as ov

    tensor = ov.Tensor(ov.Type.u4, ov.Shape(list(values.shape)))
    tensor.data[:] = _pack_u4(values).reshape(tensor.data.shape)
    return ov.op.Constant(tensor)


def requantize(weights: np.ndarray, zero: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, ...]:
    """Dequantize u8 ``(weights - zero) * scale`` (groups on the last axis) and quantize it again to u4."""
    real = (weights.astype(np.float32) - zero.astype(np.float32)) * scale.astype(np.float32)
    low, high = real.min(axis=-1, keepdims=True), real.max(axis=-1, keepdims=True)
    step = np.maximum((high - low) / 15.0, 1e-8)
    zero4 = np.clip(np.round(-low / step), 0, 15)
    quant = np.clip(np.round(real / step) + zero4, 0, 15)
    return quant.astype(np.uint8), zero4.astype(np.uint8), step.astype(np.float16)


def main(argv: list[str] | None = None) -> int:
    """Write OUT_FOLDER: IR_FOLDER's files, with the output projection in u4."""
    import openvino as ov
    from openvino import opset13 as ops

    source, target = (Path(arg) for arg in (argv or sys.argv[1:]))
    model = ov.Core().read_model(source / "openvino_model.xml")
    matmul = model.output(0).get_node().input_value(0).get_node()
    while matmul.get_type_name() != "MatMul":
        matmul = matmul.input_value(0).get_node()
    try:  # Convert <- Reshape <- Multiply(Subtract(Convert(u8), Convert(u8 zero)), scale), as GenAI builds Q8_0
        reshape = matmul.input_value(1).get_node().input_value(0).get_node()
        multiply = reshape.input_value(0).get_node()
        subtract, scale_node = (multiply.input_value(i).get_node() for i in range(2))
        weight_node = subtract.input_value(0).get_node().input_value(0).get_node()
        zero_node = subtract.input_value(1).get_node().input_value(0).get_node()
        pattern = (reshape.get_type_name(), multiply.get_type_name(), subtract.get_type_name(),
                   str(weight_node.get_output_element_type(0)))
    except (IndexError, RuntimeError):
        pattern = ()
    if pattern != ("Reshape", "Multiply", "Subtract", "<Type: 'uint8_t'>"):
        raise SystemExit(f"{source}: the output projection's weights are not u8 with zero points and scales in "
                         f"groups (found {pattern or 'another graph'}); only such a model (a Q8_0 output tensor, "
                         f"as in the default model's GGUF) can be requantized here")
    quant, zero4, step = requantize(weight_node.get_data(), zero_node.get_data(), scale_node.get_data())
    weights = ops.convert(_u4_constant(quant), ov.Type.f16)
    centred = ops.subtract(weights, ops.convert(_u4_constant(zero4), ov.Type.f16))
    scaled = ops.multiply(centred, ops.constant(step))
    flat = ops.reshape(scaled, reshape.input_value(1), False)
    matmul.input(1).replace_source_output(ops.convert(flat, ov.Type.f32).output(0))
    model.validate_nodes_and_infer_types()
    target.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if not item.name.startswith("openvino_model."):
            shutil.copy2(item, target / item.name)
    ov.save_model(model, target / "openvino_model.xml", compress_to_fp16=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
