"""An OpenVINO IR folder (openvino_model.xml + tokenizer + detokenizer) serves like the .gguf does.

The folder is made from the default model by OpenVINO GenAI itself (``enable_save_ov_model``), so no
model hub and no PyTorch are needed."""

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import start_server

pytestmark = pytest.mark.slow

EXPORT = """
import sys, openvino_genai
openvino_genai.LLMPipeline(sys.argv[1], "CPU", enable_save_ov_model=True)
"""


@pytest.fixture(scope="module")
def ir_folder(default_model, tmp_path_factory):
    work = tmp_path_factory.mktemp("ir")
    gguf = work / default_model.name
    gguf.symlink_to(default_model)
    subprocess.run([sys.executable, "-c", textwrap.dedent(EXPORT), str(gguf)], check=True, timeout=300,
                   capture_output=True)
    gguf.unlink()  # leave a pure IR folder
    names = {p.name for p in work.iterdir()}
    assert {"openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml"} <= names, names
    return work


@pytest.fixture(scope="module")
def ir_server(ir_folder, tmp_path_factory):
    server = start_server(["--model", str(ir_folder), "--model-name", "smollm2-ir"], tmp_path_factory.mktemp("irs"))
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
