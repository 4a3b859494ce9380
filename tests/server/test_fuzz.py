"""A bounded fuzz run of every endpoint in /openapi.json (schemathesis): whatever it sends, no answer is a 5xx,
and the server still serves afterwards."""

import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import MODEL_NAME, start_server

pytestmark = pytest.mark.slow

SCHEMATHESIS = shutil.which("schemathesis", path=str(Path(sys.executable).parent))


@pytest.fixture(scope="module")
def fuzzed(default_model, tmp_path_factory):
    # at most 16 new tokens a request, so that what the fuzzer asks for stays quick to generate
    server = start_server(["--model", str(default_model), "--model-name", MODEL_NAME, "--embedding-model",
                           "all-minilm-l6-v2", "--max-tokens-limit", "16"], tmp_path_factory.mktemp("fuzz"))
    yield server
    server.stop()


def test_the_openapi_document_lists_every_endpoint_with_the_served_models(fuzzed):
    for _ in range(100):  # the encoder loads in the background
        document = httpx.get(f"{fuzzed.base_url}/openapi.json").json()
        if "all-minilm-l6-v2" in str(document):
            break
        time.sleep(0.2)
    paths = document["paths"]
    assert {"/v3/chat/completions", "/v3/completions", "/v3/responses", "/v3/embeddings", "/v3/rerank",
            "/v3/tokenize", "/v3/detokenize", "/v3/messages", "/v3/messages/count_tokens"} <= set(paths)
    schemas = document["components"]["schemas"]
    assert schemas["ChatCompletionRequest"]["properties"]["model"]["enum"] == [MODEL_NAME]
    assert schemas["EmbeddingRequest"]["properties"]["model"]["enum"] == ["all-minilm-l6-v2"]


def test_no_fuzzed_request_gets_a_server_error_and_the_server_goes_on(fuzzed, tmp_path):
    assert SCHEMATHESIS is not None, "schemathesis is in the test extra"
    result = subprocess.run([SCHEMATHESIS, "run", f"{fuzzed.base_url}/openapi.json", "--checks", "not_a_server_error",
                             "--phases", "fuzzing", "--max-examples", "20", "--request-timeout", "60", "--no-color"],
                            capture_output=True, text=True, check=False, timeout=900, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:]
    assert " passed" in result.stdout and "failed" not in result.stdout.split("SUMMARY")[-1]
    answer = fuzzed.openai().chat.completions.create(model=MODEL_NAME, max_tokens=4,
                                                     messages=[{"role": "user", "content": "Still there?"}])
    assert answer.choices[0].message.content
    assert httpx.get(f"{fuzzed.base_url}/v2/health/ready").status_code == 200
