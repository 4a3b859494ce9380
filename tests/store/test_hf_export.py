"""Exporting a Hugging Face checkpoint to OpenVINO IR through optimum-intel (the ``[export]`` extra).

The fast tests run everywhere, with or without optimum-intel: what is refused, and how the ``optimum-cli``
child is driven (a stand-in plays it). The end-to-end test needs optimum-intel and PyTorch: it rebuilds the
default model's checkpoint from its .gguf, exports it at fp16 and serves the IR beside the .gguf.
"""

import json
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ovserve.engine.gguf import read_gguf_metadata
from ovserve.store import hf_export
from ovserve.store.hf_export import OUTPUT_FILES, HFExportError, export_checkpoint
from tests.conftest import start_server

INSTALL = re.escape("install the extra: pip install 'ovserve[export]'")
OPTIMUM_MODULES = ("optimum", "optimum.intel", "optimum.exporters", "optimum.exporters.openvino",
                   "optimum.commands", "optimum.commands.optimum_cli")


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A folder that passes for a checkpoint (config.json and a generation_config.json)."""
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "bos_token_id": 1, "eos_token_id": 2}))
    (folder / "generation_config.json").write_text('{"eos_token_id": 2, "temperature": 0.2, "_note": "kept"}\n')
    return folder


def test_without_optimum_the_error_says_how_to_install_it(checkpoint, tmp_path, monkeypatch):
    for name in OPTIMUM_MODULES:  # as if optimum-intel were not installed, where it is
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr(subprocess, "Popen", lambda *args, **kwargs: pytest.fail("ran an export without optimum"))
    for weight_format in ("fp16", "int4"):
        with pytest.raises(HFExportError, match=rf"needs optimum-intel \(missing: optimum\.intel, .*\); {INSTALL}$"):
            export_checkpoint(checkpoint, tmp_path / "out", weight_format)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"], "nothing is written"


def test_int4_and_int8_also_need_nncf(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(hf_export, "_missing_modules", lambda names: [n for n in names if n == "nncf"])
    with pytest.raises(HFExportError, match=rf"\(missing: nncf\); {INSTALL}$"):
        export_checkpoint(checkpoint, tmp_path / "out", "int8")


@pytest.mark.parametrize(("files", "hint"), [
    (["model.safetensors", "tokenizer.json"], ""),
    (["openvino_model.xml"], "; it holds openvino_model.xml, an OpenVINO IR that 'ovserve serve' serves as it is"),
    (["model.Q4_0.gguf"], "; for a .gguf, 'ovserve serve' serves it as it is and 'ovserve export FILE.gguf'"),
])
def test_a_folder_without_config_json_is_refused(tmp_path, files, hint):
    folder = tmp_path / "weights"
    folder.mkdir()
    for name in files:
        (folder / name).write_bytes(b"")
    with pytest.raises(HFExportError, match=re.escape(f"{folder} is not a Hugging Face checkpoint folder: it has "
                                                      f"no config.json{hint}")):
        export_checkpoint(folder, tmp_path / "out", "fp16")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("source", ["no-slash", "org/name/extra", "./missing/folder", Path("org/name")])
def test_a_source_that_is_neither_a_folder_nor_an_id_is_refused(tmp_path, monkeypatch, source):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(HFExportError, match=r"is neither a Hugging Face checkpoint folder .* nor a Hugging Face id"):
        export_checkpoint(source, tmp_path / "out")


def test_a_file_a_bad_weight_format_and_an_existing_output_are_refused(checkpoint, tmp_path):
    with pytest.raises(HFExportError, match="is a file; give a Hugging Face checkpoint folder"):
        export_checkpoint(checkpoint / "config.json", tmp_path / "out")
    with pytest.raises(HFExportError, match="weight format 'int3' is not one of int4, int8, fp16"):
        export_checkpoint(checkpoint, tmp_path / "out", "int3")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("")
    with pytest.raises(HFExportError, match="out exists; give a new folder"):
        export_checkpoint(checkpoint, tmp_path / "out")


# A stand-in for ``python -m optimum.commands.optimum_cli``: records its arguments, prints a progress bar,
# then does what $FAKE_OPTIMUM says with the output folder (its last argument).
FAKE_OPTIMUM = """#!/bin/sh
for output; do :; done
echo "$@" > "$FAKE_LOG"; echo "HF_HUB_OFFLINE=$HF_HUB_OFFLINE" >> "$FAKE_LOG"
printf 'Exporting 10%%\\rExporting 100%%\\n'
mode=$FAKE_OPTIMUM
case "$mode $*" in
  "group-size "*"--group-size-fallback adjust"*) mode=ok ;;
  "group-size "*) echo "nncf.errors.InvalidGroupSizeError: Failed to apply group-wise quantization with group size value 128."
     echo "Ensure that the group size is divisible by the channel size. Failed nodes:"
     for i in $(seq 300); do echo "	\"__module.model.layers.$i.mlp.up_proj/aten::linear/MatMul\" (channel size: 576)"; done
     exit 1 ;;
esac
case "$mode" in
  fail) echo "ValueError: this checkpoint's architecture is not supported" >&2; exit 3 ;;
  torchvision) echo "RuntimeError: operator torchvision::nms does not exist"
     echo "ModuleNotFoundError: Could not import module 'LlamaConfig'."; exit 1 ;;
  no-tokenizer) touch "$output/openvino_model.xml" "$output/openvino_model.bin" ;;
  ok) for f in model tokenizer detokenizer; do touch "$output/openvino_$f.xml" "$output/openvino_$f.bin"; done
      echo '{"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": null}' > "$output/config.json"
      [ -n "$OPTIMUM_GENERATION_CONFIG" ] && echo '{"eos_token_id": 7}' > "$output/generation_config.json" ;;
esac
exit 0
"""


@pytest.fixture
def fake_optimum(tmp_path, monkeypatch) -> Path:
    script = tmp_path / "fake-python"
    script.write_text(FAKE_OPTIMUM)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(sys, "executable", str(script))
    monkeypatch.setattr(hf_export, "_missing_modules", lambda names: [])
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "args"))
    return tmp_path / "args"


def test_the_export_command_and_the_folder_it_gives(checkpoint, tmp_path, monkeypatch, fake_optimum, capsys):
    monkeypatch.setenv("FAKE_OPTIMUM", "ok")
    output = tmp_path / "models" / "ir"
    assert export_checkpoint(checkpoint, output, "int8") == output
    args, offline = fake_optimum.read_text().splitlines()
    assert re.fullmatch(rf"-m optimum.commands.optimum_cli export openvino --model {re.escape(str(checkpoint))} --task "
                        rf"text-generation-with-past --library transformers --weight-format int8 \S+", args)
    assert offline == "HF_HUB_OFFLINE=1", "a local folder is exported without asking the hub"
    assert sorted(p.name for p in output.iterdir()) == sorted([*OUTPUT_FILES, "config.json", "generation_config.json"])
    assert (output / "generation_config.json").read_bytes() == (checkpoint / "generation_config.json").read_bytes()
    assert stat.S_IMODE(output.stat().st_mode) == 0o755
    assert sorted(p.name for p in output.parent.iterdir()) == ["ir"], "no temporary folder is left"
    assert "Exporting 100%" in capsys.readouterr().err, "optimum's progress is shown"


def test_a_cross_encoder_checkpoint_is_exported_as_a_classifier(checkpoint, tmp_path, monkeypatch, fake_optimum):
    """A reranker (bge-reranker, ms-marco-MiniLM: *ForSequenceClassification) is exported as GenAI's
    TextRerankPipeline reads it; a Qwen3-Reranker, a causal LM, as an LLM."""
    monkeypatch.setenv("FAKE_OPTIMUM", "ok")
    (checkpoint / "config.json").write_text(json.dumps({"architectures": ["XLMRobertaForSequenceClassification"]}))
    export_checkpoint(checkpoint, tmp_path / "cross-encoder", "int8", quiet=True)
    assert " --task text-classification --library transformers " in fake_optimum.read_text()
    (checkpoint / "config.json").write_text(json.dumps({"architectures": ["Qwen3ForCausalLM"]}))
    export_checkpoint(checkpoint, tmp_path / "qwen3-reranker", "int8", quiet=True)
    assert " --task text-generation-with-past --library transformers " in fake_optimum.read_text()


def test_without_a_generation_config_one_is_made(checkpoint, tmp_path, monkeypatch, fake_optimum):
    monkeypatch.setenv("FAKE_OPTIMUM", "ok")
    (checkpoint / "generation_config.json").unlink()
    export_checkpoint(checkpoint, tmp_path / "a", "fp16", quiet=True)
    assert json.loads((tmp_path / "a" / "generation_config.json").read_text()) == {"bos_token_id": 1,
                                                                                    "eos_token_id": 2}
    monkeypatch.setenv("OPTIMUM_GENERATION_CONFIG", "1")  # optimum's own, where it writes one
    export_checkpoint(checkpoint, tmp_path / "b", "fp16", quiet=True)
    assert json.loads((tmp_path / "b" / "generation_config.json").read_text()) == {"eos_token_id": 7}


@pytest.mark.parametrize(("mode", "message"), [
    ("fail", r"could not export .*checkpoint \(exit 3\): ValueError: this checkpoint's architecture is not supported\n"
             r"Exporting 100%\nValueError"),
    ("torchvision", r"(?s)\(exit 1\): ModuleNotFoundError: Could not import module 'LlamaConfig'.\n.*\ntorchvision "
                    r"does not match the installed torch .*: install both from the same index, or uninstall torchvision"),
    ("no-tokenizer", "without openvino_tokenizer.xml, openvino_tokenizer.bin, openvino_detokenizer.xml, "
                     "openvino_detokenizer.bin; ovserve needs the tokenizer and detokenizer as OpenVINO IR"),
])
def test_a_failed_export_says_why_and_leaves_nothing(checkpoint, tmp_path, monkeypatch, fake_optimum, mode, message):
    monkeypatch.setenv("FAKE_OPTIMUM", mode)
    with pytest.raises(HFExportError, match=message):
        export_checkpoint(checkpoint, tmp_path / "out", "fp16", quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["args", "checkpoint", "fake-python"]


def test_int4_group_sizes_that_do_not_fit_are_adjusted(checkpoint, tmp_path, monkeypatch, fake_optimum, capsys):
    monkeypatch.setenv("FAKE_OPTIMUM", "group-size")
    export_checkpoint(checkpoint, tmp_path / "out", "int4")
    args = fake_optimum.read_text().splitlines()[0]
    assert re.search(r" --weight-format int4 --group-size-fallback adjust \S+/\.out\.export-\w+$", args), args
    assert "retrying with --group-size-fallback adjust (InvalidGroupSizeError)" in capsys.readouterr().err
    assert (tmp_path / "out" / "openvino_model.xml").is_file()


def test_a_hub_id_goes_to_optimum_as_it_is(tmp_path, monkeypatch, fake_optimum):
    monkeypatch.setenv("FAKE_OPTIMUM", "ok")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    export_checkpoint("HuggingFaceTB/SmolLM2-135M-Instruct", tmp_path / "out", quiet=True)
    args, offline = fake_optimum.read_text().splitlines()
    assert " --model HuggingFaceTB/SmolLM2-135M-Instruct " in args and "--weight-format int4" in args
    assert offline == "HF_HUB_OFFLINE="
    assert json.loads((tmp_path / "out" / "generation_config.json").read_text()) == {"bos_token_id": 1,
                                                                                      "eos_token_id": 2}
    # The repository's own generation_config.json, where optimum's download put it in the cache.
    repo = tmp_path / "hub" / "models--HuggingFaceTB--SmolLM2-135M-Instruct"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "generation_config.json").write_text('{"temperature": 0.2, "top_p": 0.9}')
    export_checkpoint("HuggingFaceTB/SmolLM2-135M-Instruct", tmp_path / "again", quiet=True)
    assert json.loads((tmp_path / "again" / "generation_config.json").read_text()) == {"temperature": 0.2,
                                                                                        "top_p": 0.9}


# --- end to end: needs optimum-intel and PyTorch ---

NOT_IN_CI = ("optimum-intel (the [export] extra) needs PyTorch, whose PyPI wheels pull GBs of CUDA libraries: "
             "kept out of CI; install torch (CPU) and 'ovserve[export]' gguf accelerate to run it")
PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village,"]
FIRST_TOKENS = 5
Greedy = list[tuple[list[str], list[float]]]


def checkpoint_from_gguf(gguf: Path, folder: Path) -> None:
    """Write a Hugging Face checkpoint of ``gguf``: its weights dequantized by transformers, its tokenizer."""
    from tokenizers import decoders, processors
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

    AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(folder)
    # transformers 5.5 reads this GGUF's byte-level BPE as a CodeLlamaTokenizer that puts <|im_start|> before
    # every prompt and takes it for EOS; the GGUF says add_bos_token False and EOS <|im_end|>. Rebuilt as the
    # model's own tokenizer.json has it: byte-level, nothing added, the GGUF's special tokens.
    loaded = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    metadata = read_gguf_metadata(gguf)
    backend = loaded.backend_tokenizer
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    backend.decoder = decoders.ByteLevel()
    special = {f"{role}_token": backend.id_to_token(metadata[f"tokenizer.ggml.{key}_token_id"])
               for role, key in (("bos", "bos"), ("eos", "eos"), ("unk", "unknown"), ("pad", "padding"))}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, chat_template=loaded.chat_template, **special)
    assert metadata["tokenizer.ggml.add_bos_token"] is False and tokenizer("Hi").input_ids == [backend.token_to_id("Hi")]
    tokenizer.save_pretrained(folder)
    config = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**config, "temperature": 0.2, "top_p": 0.9}))


def pytorch_greedy(checkpoint: Path) -> Greedy:
    """The first tokens of each prompt, and their log-probabilities, as PyTorch runs the checkpoint."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    results = []
    with torch.no_grad():
        for prompt in PROMPTS:
            ids, tokens, logprobs = tokenizer(prompt, return_tensors="pt").input_ids, [], []
            for _ in range(FIRST_TOKENS):
                scores = torch.log_softmax(model(ids).logits[0, -1].float(), dim=-1)
                token = int(scores.argmax())
                tokens.append(tokenizer.decode([token]))
                logprobs.append(float(scores[token]))
                ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
            results.append((tokens, logprobs))
    return results


def served_greedy(model: Path, tmp: Path) -> tuple[Greedy, list[int], list[str]]:
    """Serve ``model``: the first tokens (and log-probabilities) of each prompt, the prompts' token counts, and
    the first tokens of a chat reply."""
    tmp.mkdir()
    server = start_server(["--model", str(model), "--model-name", "m"], tmp)
    try:
        client = server.openai()
        completions, prompt_tokens = [], []
        for prompt in PROMPTS:
            response = client.completions.create(model="m", prompt=prompt, temperature=0, max_tokens=FIRST_TOKENS,
                                                 logprobs=0, extra_body={"ignore_eos": True})
            completions.append((response.choices[0].logprobs.tokens, response.choices[0].logprobs.token_logprobs))
            prompt_tokens.append(response.usage.prompt_tokens)
        reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "What is 2+2?"}],
                                               temperature=0, max_tokens=FIRST_TOKENS, logprobs=True)
        return completions, prompt_tokens, [entry.token for entry in reply.choices[0].logprobs.content]
    finally:
        server.stop()


@pytest.mark.slow
def test_an_exported_checkpoint_serves_like_pytorch_and_its_gguf(default_model, tmp_path):
    for module in ("optimum.intel", "torch", "transformers", "gguf", "accelerate"):
        pytest.importorskip(module, reason=NOT_IN_CI)
    checkpoint = tmp_path / "checkpoint"
    checkpoint_from_gguf(default_model, checkpoint)
    ir = export_checkpoint(checkpoint, tmp_path / "ir", "fp16", quiet=True)
    assert {*OUTPUT_FILES, "generation_config.json", "config.json", "tokenizer.json"} <= {p.name for p in ir.iterdir()}
    assert (ir / "generation_config.json").read_bytes() == (checkpoint / "generation_config.json").read_bytes()

    reference = pytorch_greedy(checkpoint)
    from_ir, ir_prompt_tokens, ir_chat = served_greedy(ir, tmp_path / "ir-server")
    from_gguf, gguf_prompt_tokens, gguf_chat = served_greedy(default_model, tmp_path / "gguf-server")
    print(f"\nfirst tokens\n  PyTorch {reference}\n  fp16 IR {from_ir} {ir_chat}\n  .gguf   {from_gguf} {gguf_chat}",
          file=sys.stderr)
    # The export against the checkpoint it came from: the same tokens, the same log-probabilities but for
    # fp16 weights and OpenVINO's arithmetic (0.003 apart at most, measured).
    for (tokens, logprobs), (ir_tokens, ir_logprobs) in zip(reference, from_ir, strict=True):
        assert ir_tokens == tokens
        assert ir_logprobs == pytest.approx(logprobs, abs=0.03)
    # Against the .gguf served as it is: the same tokenizer and chat template, and the same first token. Not
    # more: OpenVINO GenAI reads Q4_1 as u4 with an integer zero point, rounding each block's offset (up to
    # 0.1 on weights of RMS 0.2), while transformers dequantizes it exactly; the texts part after a token or two.
    assert ir_prompt_tokens == gguf_prompt_tokens
    assert [tokens[0] for tokens, _ in from_ir] == [tokens[0] for tokens, _ in from_gguf]
    assert ir_chat[0] == gguf_chat[0]
