"""An IR variant for the step A/B: the projections that read the same input fused into one matrix each (a layer's
q, k and v; its MLP's gate and up), the outputs split after. The weights, their u4 groups, scales and zero points
are the same bytes, concatenated, so the logits are the same up to the order of floating-point sums; a step makes
90 fewer fully connected calls (211 to 121 for the default model).

Usage::

    python -m benchmarks.fuse_projections IR_FOLDER OUT_FOLDER
"""

from __future__ import annotations

import shutil
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np


def _decompression(matmul: Any) -> dict[str, Any] | None:
    """The u4 weight, u4 zero point and scale constants behind ``matmul``'s weights (Convert <- Reshape <-
    Multiply(Subtract(Convert(u4), Convert(u4 zero)), scale)), or None for any other graph."""
    try:
        reshape = matmul.input_value(1).get_node().input_value(0).get_node()
        multiply = reshape.input_value(0).get_node()
        subtract, scale = (multiply.input_value(i).get_node() for i in range(2))
        weight = subtract.input_value(0).get_node().input_value(0).get_node()
        zero = subtract.input_value(1).get_node().input_value(0).get_node()
    except (IndexError, RuntimeError):
        return None
    kinds = (reshape.get_type_name(), multiply.get_type_name(), subtract.get_type_name(), scale.get_type_name())
    u4 = "<Type: 'uint4_t'>"
    if kinds != ("Reshape", "Multiply", "Subtract", "Constant") or str(weight.get_output_element_type(0)) != u4 \
            or str(zero.get_output_element_type(0)) != u4 or not matmul.get_attributes().get("transpose_b"):
        return None
    return {"weight": weight, "zero": zero, "scale": scale}


def _u4_concat(constants: list[Any]) -> Any:
    """One u4 Constant: ``constants`` (same shape but the first axis, an even number of values per row)
    concatenated along the first axis, as packed bytes."""
    import openvino as ov

    shapes = [list(c.get_output_shape(0)) for c in constants]
    shape = [sum(s[0] for s in shapes), *shapes[0][1:]]
    tensor = ov.Tensor(ov.Type.u4, ov.Shape(shape))
    tensor.data[:] = np.concatenate([np.asarray(c.get_data()).reshape(-1) for c in constants])
    return ov.op.Constant(tensor)


def fuse(model: Any) -> int:
    """Fuse every group of u4 projections of ``model`` that read the same input; return how many groups."""
    import openvino as ov
    from openvino import opset13 as ops

    groups: dict[Any, list[tuple[Any, dict[str, Any]]]] = defaultdict(list)
    for node in model.get_ordered_ops():
        if node.get_type_name() == "MatMul" and (parts := _decompression(node)) is not None:
            source = node.input_value(0)
            groups[(source.get_node().get_friendly_name(), source.get_index())].append((node, parts))
    fused = 0
    for members in groups.values():
        if len(members) < 2:
            continue
        rows = [int(m[1]["weight"].get_output_shape(0)[0]) for m in members]
        columns = int(np.prod(list(members[0][1]["weight"].get_output_shape(0))[1:]))
        weights = ops.convert(_u4_concat([m[1]["weight"] for m in members]), ov.Type.f16)
        zeros = ops.convert(_u4_concat([m[1]["zero"] for m in members]), ov.Type.f16)
        scales = ops.constant(np.concatenate([m[1]["scale"].get_data() for m in members]))
        matrix = ops.reshape(ops.multiply(ops.subtract(weights, zeros), scales),
                             ops.constant(np.array([sum(rows), columns], np.int64)), False)
        product = ops.matmul(members[0][0].input_value(0), ops.convert(matrix, ov.Type.f32), False, True)
        split = ops.variadic_split(product, ops.constant(np.int64(-1)), ops.constant(np.array(rows, np.int64)))
        for index, (matmul, _) in enumerate(members):
            matmul.output(0).replace(split.output(index))
        fused += 1
    model.validate_nodes_and_infer_types()
    return fused


def main(argv: list[str] | None = None) -> int:
    """Write OUT_FOLDER: IR_FOLDER's files, with its projections fused."""
    import openvino as ov

    source, target = (Path(arg) for arg in (argv or sys.argv[1:]))
    model = ov.Core().read_model(source / "openvino_model.xml")
    count = fuse(model)
    if not count:
        raise SystemExit(f"{source}: no u4 projections share an input (this works on u4 weights in groups, as "
                         f"GenAI builds a Q4 GGUF's); nothing to fuse")
    target.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if not item.name.startswith("openvino_model."):
            shutil.copy2(item, target / item.name)
    ov.save_model(model, target / "openvino_model.xml", compress_to_fp16=False)
    print(f"fused {count} groups of projections into {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
