"""A sentence-transformers BERT checkpoint (``model.safetensors`` + ``tokenizer.json``) as OpenVINO IR, with
no PyTorch and no transformers: how ``ovserve pull`` makes the default embedding model servable.

- The model: BERT's encoder built op by op with OpenVINO's opset from the checkpoint's weights (embeddings,
  LayerNorm, self-attention with the padding mask, GELU feed-forward), output ``last_hidden_state``.
- The tokenizer: a WordPiece pipeline from ``tokenizer.json`` with openvino-tokenizers' building blocks
  (the BERT normalizer and pre-tokenizer, ``[CLS] ... [SEP]``), output ``input_ids``, ``attention_mask``,
  ``token_type_ids``. It does not truncate: the server counts and checks lengths itself.

Only the BERT family (``BertModel`` with a WordPiece tokenizer) is built; other embedding models come as IR
(``optimum-cli export openvino --task feature-extraction``).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": None, "I64": np.int64, "I32": np.int32}


class BertExportError(ValueError):
    """The checkpoint is not one this exporter builds (says what it found)."""


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a ``.safetensors`` file (an 8-byte header length, a JSON header, raw little-endian data)."""
    with open(path, "rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(length))
        data = np.fromfile(file, dtype=np.uint8)
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(entry["dtype"])
        if dtype is None:
            raise BertExportError(f"{path}: tensor {name} has dtype {entry['dtype']}, which is not supported")
        start, end = entry["data_offsets"]
        tensor = data[start:end].view(dtype).reshape(entry["shape"])
        tensors[name] = tensor.astype(np.float32) if dtype == np.float16 else tensor
    return tensors


def build_bert_model(folder: Path) -> Any:
    """``openvino.Model`` of the BERT encoder in ``folder`` (``config.json`` + ``model.safetensors``)."""
    import openvino as ov
    import openvino.opset13 as ops

    config = json.loads((folder / "config.json").read_text())
    if config.get("model_type") != "bert":
        raise BertExportError(f"{folder}: model_type is {config.get('model_type')!r}; only BERT encoders are built "
                              f"here (export others with optimum-cli export openvino --task feature-extraction)")
    tensors = read_safetensors(folder / "model.safetensors")
    weights = {name.removeprefix("bert."): value for name, value in tensors.items()}
    hidden, heads, eps = config["hidden_size"], config["num_attention_heads"], config["layer_norm_eps"]
    head_size = hidden // heads

    def const(value: Any) -> Any:  # (ascontiguousarray would turn a scalar into shape [1])
        return ops.constant(np.ascontiguousarray(value) if np.ndim(value) else np.asarray(value))

    def i64(*values: int) -> Any:
        return const(np.array(values if len(values) != 1 else values[0], dtype=np.int64))

    def layer_norm(x: Any, prefix: str) -> Any:
        normal = ops.mvn(x, const(np.array([-1], np.int64)), True, eps, "inside_sqrt")
        return ops.add(ops.multiply(normal, const(weights[f"{prefix}.weight"])), const(weights[f"{prefix}.bias"]))

    def linear(x: Any, prefix: str) -> Any:
        return ops.add(ops.matmul(x, const(weights[f"{prefix}.weight"]), False, True), const(weights[f"{prefix}.bias"]))

    input_ids = ops.parameter([-1, -1], ov.Type.i64, name="input_ids")
    attention_mask = ops.parameter([-1, -1], ov.Type.i64, name="attention_mask")
    token_type_ids = ops.parameter([-1, -1], ov.Type.i64, name="token_type_ids")
    length = ops.gather(ops.shape_of(input_ids, ov.Type.i64), i64(1), i64(0))
    positions = ops.range(i64(0), length, i64(1), ov.Type.i64)
    x = ops.add(ops.add(ops.gather(const(weights["embeddings.word_embeddings.weight"]), input_ids, i64(0)),
                        ops.gather(const(weights["embeddings.position_embeddings.weight"]), positions, i64(0))),
                ops.gather(const(weights["embeddings.token_type_embeddings.weight"]), token_type_ids, i64(0)))
    x = layer_norm(x, "embeddings.LayerNorm")
    # padding: a large negative bias on the attention scores of masked keys, shaped [batch, 1, 1, keys]
    masked = ops.subtract(const(np.float32(1.0)), ops.convert(attention_mask, ov.Type.f32))
    bias = ops.unsqueeze(ops.multiply(masked, const(np.float32(np.finfo(np.float32).min))), i64(1, 2))
    to_heads, from_heads, swap = i64(0, 0, heads, head_size), i64(0, 0, hidden), i64(0, 2, 1, 3)
    for layer in range(config["num_hidden_layers"]):
        prefix = f"encoder.layer.{layer}"
        query, key, value = (ops.transpose(ops.reshape(linear(x, f"{prefix}.attention.self.{name}"), to_heads, True),
                                           swap) for name in ("query", "key", "value"))
        scores = ops.add(ops.multiply(ops.matmul(query, key, False, True), const(np.float32(head_size ** -0.5))), bias)
        context = ops.matmul(ops.softmax(scores, -1), value, False, False)
        context = ops.reshape(ops.transpose(context, swap), from_heads, True)
        x = layer_norm(ops.add(linear(context, f"{prefix}.attention.output.dense"), x),
                       f"{prefix}.attention.output.LayerNorm")
        inner = ops.gelu(linear(x, f"{prefix}.intermediate.dense"), "erf")
        x = layer_norm(ops.add(linear(inner, f"{prefix}.output.dense"), x), f"{prefix}.output.LayerNorm")
    result = ops.result(x)
    result.output(0).get_tensor().set_names({"last_hidden_state"})
    return ov.Model([result], [input_ids, attention_mask, token_type_ids], "bert_encoder")


def build_wordpiece_tokenizer(folder: Path) -> Any:
    """``openvino.Model`` of the BERT WordPiece tokenizer that ``folder/tokenizer.json`` describes."""
    import openvino as ov
    from openvino_tokenizers import tokenizer_pipeline as steps
    from openvino_tokenizers.utils import change_outputs_type, update_rt_info_with_environment

    spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    normalizer = spec.get("normalizer") or {}
    kinds = (spec["model"]["type"], (spec.get("pre_tokenizer") or {}).get("type"))
    if kinds != ("WordPiece", "BertPreTokenizer") or normalizer.get("type") != "BertNormalizer":
        raise BertExportError(f"{folder}/tokenizer.json is {kinds}; only BERT WordPiece tokenizers are built here")
    pipeline = steps.TokenizerPipeline()
    pipeline.add_steps(steps.SpecialTokensSplit.from_string_iter(
        [token["content"] for token in spec["added_tokens"] if token["special"]]))
    if normalizer.get("clean_text"):
        pipeline.add_steps([steps.RegexNormalizationStep.del_control_chars_regex(),
                            steps.RegexNormalizationStep.replace_whitespace_regex()])
    if normalizer.get("handle_chinese_chars"):
        pipeline.add_steps(steps.RegexNormalizationStep.handle_chinese_chars_regex())
    if normalizer.get("strip_accents") or (normalizer.get("strip_accents") is None and normalizer.get("lowercase")):
        pipeline.add_steps([steps.NormalizeUnicode("NFD"), steps.RegexNormalizationStep.strip_accents_regex()])
    if normalizer.get("lowercase"):
        pipeline.add_steps(steps.CaseFoldStep())
    pipeline.add_steps(steps.RegexSplitStep.bert_splitter())
    wordpiece = steps.WordPieceTokenizationStep.from_hf_json(spec)
    pipeline.add_steps(wordpiece)
    pipeline.vocab = wordpiece.vocab
    combine = steps.CombineSegmentsStep.from_hf_json_template_postprocessor(spec["post_processor"], 1, True)
    pipeline.add_steps(steps.TruncationStep(max_length=1 << 20, truncate_right=True, truncation=False))
    pipeline.add_steps(combine)
    padding = spec.get("padding") or {"pad_token": "[PAD]", "pad_id": 0, "pad_type_id": 0}
    pipeline.add_steps(steps.PaddingStep(token=padding["pad_token"], _token_id=padding["pad_id"],
                                         token_type_id=padding["pad_type_id"], pad_right=True))
    model = change_outputs_type(pipeline.get_tokenizer_ov_subgraph(), ov.Type.i64)
    for key, value in {"add_special_tokens": "True", "pad_token_id": padding["pad_id"], "number_of_inputs": 1,
                       "add_attention_mask": "True", "truncation": "False", "tokenizer_output_type": "i64"}.items():
        model.set_rt_info(value, key)
    update_rt_info_with_environment(model)
    return model


def export_sentence_transformer(source: Path, output: Path) -> None:
    """Write ``openvino_model.xml/.bin`` and ``openvino_tokenizer.xml/.bin`` for the checkpoint in ``source``
    into ``output`` (weights kept at f32)."""
    import openvino as ov

    output.mkdir(parents=True, exist_ok=True)
    ov.save_model(build_bert_model(source), output / "openvino_model.xml", compress_to_fp16=False)
    ov.save_model(build_wordpiece_tokenizer(source), output / "openvino_tokenizer.xml")
