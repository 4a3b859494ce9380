"""An OpenVINO IR folder (openvino_model.xml + tokenizer + detokenizer) serves like the .gguf does.

The folder is made from the default model by ``ovserve export`` (OpenVINO GenAI's own GGUF reader), so no
model hub and no PyTorch are needed."""

import subprocess
import sys

import pytest

from tests.conftest import MODEL_NAME, start_server

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def ir_server(ir_folder, tmp_path_factory):
    # without the prefix cache, as the shared server on the .gguf: each computes a prompt in the same shapes
    server = start_server(["--model", str(ir_folder), "--model-name", "smollm2-ir", "--enable-prefix-caching",
                           "false"], tmp_path_factory.mktemp("irs"))
    yield server
    server.stop()


def test_an_ir_folder_serves_chat_and_completions(ir_server):
    client = ir_server.openai()
    assert [m.id for m in client.models.list().data] == ["smollm2-ir"]
    answer = client.chat.completions.create(
        model="smollm2-ir", messages=[{"role": "user", "content": "What is the capital of France?"}], temperature=0)
    assert "Paris" in answer.choices[0].message.content
    completion = client.completions.create(model="smollm2-ir", prompt="The capital of France is", max_tokens=5,
                                           temperature=0)
    assert "Paris" in completion.choices[0].text


def test_the_exported_ir_answers_as_the_gguf_does_on_this_machine(ir_server, server):
    """The same weights and the same engine, on the same CPU and in the same shapes (one prompt alone, no prefix
    cache on either server): the same greedy text, token for token."""
    fields = {"prompt": "Once upon a time", "max_tokens": 24, "temperature": 0, "extra_body": {"ignore_eos": True}}
    from_ir = ir_server.openai().completions.create(model="smollm2-ir", **fields).choices[0].text
    from_gguf = server.openai().completions.create(model=MODEL_NAME, **fields).choices[0].text
    assert from_ir == from_gguf


def test_export_refuses_what_it_cannot_export(tmp_path, default_model):
    not_gguf = subprocess.run([sys.executable, "-m", "ovserve.cli", "export", str(tmp_path)], capture_output=True,
                              text=True)
    assert not_gguf.returncode == 1 and "not a Hugging Face checkpoint folder: it has no config.json" in not_gguf.stderr
    (tmp_path / "taken").mkdir()
    taken = subprocess.run([sys.executable, "-m", "ovserve.cli", "export", str(default_model), "--output",
                            str(tmp_path / "taken")], capture_output=True, text=True)
    assert taken.returncode == 1 and "exists" in taken.stderr
