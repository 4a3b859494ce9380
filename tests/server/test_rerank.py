"""Rerank and score on a cross-encoder, end to end over HTTP on the tiny committed rerankers: the official Cohere
client (v1 and v2), vLLM's /score, the answers' indexes, order and top_n, bad input, an OVMS rerank graph served
unchanged, a full engine queue, and a Qwen3-style reranker pulled with --task rerank. The weights are random: the
tests check plumbing and shapes, never which document is relevant."""

import asyncio
import json
import random
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cohere
import httpx
import pytest

from ovserve.store.catalog import TASK_FILE, model_task
from ovserve.store.fetch import DEFAULT_EMBEDDING_MODEL, pull
from tests.conftest import start_server
from tests.fake_hub import fake_hub
from tests.server.test_bad_input import assert_openai_error
from tests.store.test_catalog import ovserve
from tests.tiny_models import QWEN3_RERANKER, RERANKER

pytestmark = pytest.mark.slow  # real servers, four of them

NAME = "bge-tiny"
QUERY = "What is the capital of France?"
DOCUMENTS = ["Paris is the capital of France.", "The cat sat on the mat.", "OpenVINO runs models on CPUs.",
             "Berlin is the capital of Germany.", "bread and butter", "A long text about rivers " * 20]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The tiny cross-encoder, with the default embedding model beside it (loaded in the background)."""
    pull(DEFAULT_EMBEDDING_MODEL, quiet=True)
    server = start_server([str(RERANKER), "--model-name", NAME, "--embedding-model", DEFAULT_EMBEDDING_MODEL.name],
                          tmp_path_factory.mktemp("rerank"))
    for _ in range(300):
        if len(httpx.get(f"{server.base_url}/v3/models").json()["data"]) == 2:
            break
        time.sleep(0.1)
    yield server
    server.stop()


def model_metric(server, name: str, model: str) -> float:
    """A gauge or counter of one served model, from /metrics."""
    text = httpx.get(f"{server.base_url}/metrics").text
    match = re.search(rf'^{name}{{model="{re.escape(model)}"[^}}]*}} (\S+)$', text, re.M)
    assert match is not None, f"{name} of {model} is not in /metrics"
    return float(match.group(1))


def post(server, path, body, **kwargs):
    return httpx.post(f"{server.base_url}{path}", json=body, timeout=60, **kwargs)


def test_the_cohere_v2_client_reranks(server):
    client = cohere.ClientV2(base_url=server.base_url, api_key="unused")
    answer = client.rerank(model=NAME, query=QUERY, documents=DOCUMENTS, top_n=3)
    assert len(answer.results) == 3 and answer.id.startswith("rerank-")
    scores = [result.relevance_score for result in answer.results]
    assert scores == sorted(scores, reverse=True) and all(0 <= score <= 1 for score in scores)
    assert len({result.index for result in answer.results}) == 3
    assert answer.meta.api_version.version == "2" and answer.meta.tokens.input_tokens > len(DOCUMENTS) * 8


def test_the_cohere_v1_client_at_ovms_base_url_returns_documents(server):
    client = cohere.Client(base_url=f"{server.base_url}/v3", api_key="unused")  # as OVMS's docs set it up
    answer = client.rerank(model=NAME, query=QUERY, documents=DOCUMENTS, return_documents=True)
    assert sorted(result.index for result in answer.results) == list(range(len(DOCUMENTS)))
    for result in answer.results:
        assert result.document.text == DOCUMENTS[result.index]


def test_every_path_answers_the_same(server):
    body = {"model": NAME, "query": QUERY, "documents": DOCUMENTS}
    answers = [post(server, path, body).json()["results"]
               for path in ("/v3/rerank", "/v1/rerank", "/rerank", "/v2/rerank", "/v3/v1/rerank", "/v3/v2/rerank")]
    assert all(answer == answers[0] for answer in answers)
    assert post(server, "/v3/rerank", body).json()["usage"]["total_tokens"] > 0


def test_score_answers_each_pair_at_its_index_with_the_scores_rerank_gives(server):
    ranked = {result["index"]: result["relevance_score"]
              for result in post(server, "/v3/rerank", {"model": NAME, "query": QUERY, "documents": DOCUMENTS})
              .json()["results"]}
    answer = post(server, "/v1/score", {"model": NAME, "text_1": QUERY, "text_2": DOCUMENTS}).json()
    assert answer["object"] == "list" and answer["model"] == NAME and answer["id"].startswith("score-")
    assert isinstance(answer["created"], int)
    assert [item["index"] for item in answer["data"]] == list(range(len(DOCUMENTS)))
    assert all(item["object"] == "score" for item in answer["data"])
    assert [item["score"] for item in answer["data"]] == pytest.approx([ranked[i] for i in range(len(DOCUMENTS))])
    usage = answer["usage"]
    assert usage["prompt_tokens"] == usage["total_tokens"] > 0 and usage["completion_tokens"] == 0


def test_score_pairs_one_to_one_one_to_many_and_many_to_many(server):
    queries, texts = [QUERY, "pets", "computers"], DOCUMENTS[:3]
    many = post(server, "/score", {"model": NAME, "text_1": queries, "text_2": texts}).json()["data"]
    for index, (query, text) in enumerate(zip(queries, texts, strict=True)):
        (one,) = post(server, "/v3/score", {"model": NAME, "text_1": query, "text_2": text}).json()["data"]
        assert one["index"] == 0 and many[index]["score"] == pytest.approx(one["score"], abs=0.02)
    listed = post(server, "/v3/score", {"model": NAME, "text_1": [QUERY], "text_2": texts}).json()["data"]
    assert len(listed) == 3  # a list of one text_1 goes with each text_2


def test_results_are_a_ranking_of_the_documents_and_top_n_its_beginning(server):
    words = ["capital", "france", "paris", "river", "cat", "mat", "model", "cpu", "bread", "butter", "city", "europe"]
    rng = random.Random(7)
    for count in (1, 7, 40):
        documents = [" ".join(rng.choices(words, k=rng.randint(1, 30))) for _ in range(count)]
        body = {"model": NAME, "query": " ".join(rng.choices(words, k=4)), "documents": documents}
        results = post(server, "/v3/rerank", body).json()["results"]
        assert sorted(result["index"] for result in results) == list(range(count))
        scores = [result["relevance_score"] for result in results]
        assert scores == sorted(scores, reverse=True)
        for top_n in (1, count // 2 + 1, count + 5):
            cut = post(server, "/v3/rerank", {**body, "top_n": top_n}).json()["results"]
            assert cut == results[:top_n]


def test_a_document_too_long_for_the_model_is_cut_and_the_answer_says_so(server):
    body = {"model": NAME, "query": QUERY, "documents": ["short", "word " * 3000]}
    answer = post(server, "/v3/rerank", body).json()
    assert len(answer["results"]) == 2
    (warning,) = answer["meta"]["warnings"]
    assert re.fullmatch(r"documents\[1\] was cut to \d+ of its 3000 tokens to fit this model's 512 tokens per pair "
                        r"with the query", warning)
    assert answer["usage"]["total_tokens"] <= 512 + 20
    cut = post(server, "/v3/rerank", {**body, "max_tokens_per_doc": 5}).json()
    assert "warnings" not in cut["meta"] and cut["usage"]["total_tokens"] < 40
    refused = post(server, "/v3/score", {"model": NAME, "text_1": QUERY, "text_2": "word " * 3000})
    assert_openai_error(refused, 400, "text_2", "more than this model's 512")
    assert post(server, "/v3/score", {"model": NAME, "text_1": QUERY, "text_2": "word " * 3000,
                                      "truncate_prompt_tokens": -1}).status_code == 200


@pytest.mark.parametrize(("body", "param", "words"), [
    ({"query": QUERY, "documents": []}, "documents", "at least 1"),
    ({"query": QUERY, "documents": ["x"] * 10_001}, "documents", ""),
    ({"query": QUERY, "documents": [""]}, "documents", "empty"),
    ({"query": " ", "documents": ["x"]}, "query", "no token this model reads"),
    ({"query": "\u0000", "documents": ["\u0000"]}, "query", "no token this model reads"),
    ({"documents": ["x"]}, "query", ""),
    ({"query": QUERY, "documents": ["x"], "top_n": 0}, "top_n", ""),
    ({"query": QUERY, "documents": [{"title": "t", "text": "x"}]}, "documents[0].title", ""),
    ({"query": QUERY, "documents": ["x"], "rank_fields": ["title"]}, "rank_fields", ""),
    ({"query": QUERY, "documents": ["x"], "max_chunks_per_doc": 2}, "max_chunks_per_doc", ""),
    ({"query": QUERY, "documents": ["x"], "relevant_spans": {"enabled": True}}, "relevant_spans", ""),
    ({"query": QUERY, "documents": ["x"], "max_tokens_per_doc": 0}, "max_tokens_per_doc", ""),
    ({"query": QUERY, "documents": ["x"], "priority": 2}, "priority", "only 0"),
    ({"query": "word " * 600, "documents": ["x"]}, "query", "leaves no room"),
    ({"query": QUERY, "documents": ["word " * 500] * 700}, "documents", "tokens in all"),
])
def test_bad_rerank_requests_get_a_400_naming_the_field(server, body, param, words):
    assert_openai_error(post(server, "/v3/rerank", {"model": NAME, **body}), 400, param, words)


@pytest.mark.parametrize(("body", "param", "words"), [
    ({"text_1": ["a", "b"], "text_2": ["x", "y", "z"]}, "text_1", "1:1, 1:N or N:N"),
    ({"text_1": "a", "text_2": []}, "text_2", ""),
    ({"text_1": "", "text_2": "x"}, "text_1", ""),
    ({"text_1": "a"}, "text_2", ""),
    ({"text_1": "a", "text_2": "x", "truncate_prompt_tokens": 5}, "truncate_prompt_tokens", "only -1"),
    ({"text_1": "a", "text_2": "x", "use_activation": False}, "use_activation", ""),
    ({"text_1": "a", "text_2": "x", "softmax": False}, "softmax", ""),
    ({"text_1": "a", "text_2": "x", "mm_processor_kwargs": {}}, "mm_processor_kwargs", ""),
    ({"text_1": "a", "text_2": ["x"] * 10_001}, "text_2", ""),
])
def test_bad_score_requests_get_a_400_naming_the_field(server, body, param, words):
    assert_openai_error(post(server, "/v3/score", {"model": NAME, **body}), 400, param, words)


def test_a_request_without_model_goes_to_the_reranker_and_chat_is_refused(server):
    assert post(server, "/v3/rerank", {"query": QUERY, "documents": DOCUMENTS}).json()["model"] == NAME
    assert post(server, "/score", {"text_1": QUERY, "text_2": "x"}).json()["model"] == NAME
    embeddings = post(server, "/v3/embeddings", {"input": "x"}).json()
    assert embeddings["model"] == DEFAULT_EMBEDDING_MODEL.name  # the embeddings go to the embedding model
    chat = post(server, "/v3/chat/completions", {"model": NAME, "messages": [{"role": "user", "content": "hi"}]})
    assert_openai_error(chat, 400, "model", "is a reranker: it serves /rerank and /score")


def test_the_load_measures_the_engines_speed_and_bounds_a_request_by_it(server):
    (line,) = [line for line in server.lines if f"{RERANKER.name}: reranker," in line]
    speed, limit = re.search(r"scores (\d+) tokens/s here, at most (\d+) tokens a request", line).groups()
    # 150 s of work at that speed (logged rounded), at most 300,000
    assert int(speed) > 0 and abs(int(limit) - min(300_000, int(speed) * 150)) <= 150


def test_openapi_lists_score_and_rerank_with_the_models_that_serve_them(server):
    paths = httpx.get(f"{server.base_url}/openapi.json").json()
    schemas = paths["components"]["schemas"]
    for schema in ("RerankRequest", "ScoreRequest"):  # a reranker serves them, and an embedding model by cosine
        assert schemas[schema]["properties"]["model"]["enum"] == sorted([NAME, DEFAULT_EMBEDDING_MODEL.name])
    assert "/v3/score" in paths["paths"]


def test_a_query_longer_than_several_documents_leaves_the_engine_running(server):
    """GenAI pairs one query with a call's documents by broadcasting it, which corrupted the engine's heap (found by
    the fuzz run below): the cross-encoder's calls take one document each."""
    starts = model_metric(server, "ovserve_engine_starts_total", NAME)
    body = {"model": NAME, "query": ",./;'[]\\-=<>?:\"{}|_+!@#$%^&*()`~", "documents": [",", "\U000520e7", "&", "&"]}
    for _ in range(3):
        assert len(post(server, "/v3/rerank", body).json()["results"]) == 4
    assert model_metric(server, "ovserve_engine_starts_total", NAME) == starts == 1


# --- an OVMS graph, and a full queue ------------------------------------------------------------------------------

OVMS_GRAPH = """
    input_stream: "REQUEST_PAYLOAD:input"
    output_stream: "RESPONSE_PAYLOAD:output"
    node {
        name: "rerankNode1"
        input_side_packet: "RERANK_NODE_RESOURCES:rerank_servable"
        calculator: "RerankCalculatorOV"
        input_stream: "REQUEST_PAYLOAD:input"
        output_stream: "RESPONSE_PAYLOAD:output"
        node_options: {
          [type.googleapis.com / mediapipe.RerankCalculatorOVOptions]: {
            models_path: "%s"
            max_allowed_chunks: 4
            max_position_embeddings: 12
            target_device: "CPU"
            %s
          }
        }
    }
"""


@pytest.fixture(scope="module")
def ovms(tmp_path_factory):
    """An OVMS config.json with two rerank graphs: the tiny cross-encoder beside its graph (as OVMS's export lays it
    out), and the tiny Qwen3-style reranker with no waiting room and small calls (ovserve's own options)."""
    root = tmp_path_factory.mktemp("ovms-rerank")
    model_dir = root / "ovms-rerank"
    model_dir.mkdir()
    for path in RERANKER.iterdir():
        (model_dir / path.name).symlink_to(path)
    (model_dir / "graph.pbtxt").write_text(textwrap.dedent(OVMS_GRAPH % ("./", "plugin_config: '{\"NUM_STREAMS\": 1}'")))
    (root / "busy.pbtxt").write_text(textwrap.dedent(OVMS_GRAPH % (QWEN3_RERANKER, "max_queue: 0 max_batch_tokens: 1024"))
                                     .replace("max_allowed_chunks: 4", "").replace("max_position_embeddings: 12", ""))
    (root / "config.json").write_text(json.dumps({"model_config_list": [], "mediapipe_config_list": [
        {"name": "ovms-rerank", "base_path": "ovms-rerank"}, {"name": "busy", "graph_path": str(root / "busy.pbtxt")}]}))
    server = start_server(["--config_path", str(root / "config.json")], root)
    yield server
    server.stop()


def test_an_ovms_rerank_graph_is_served_unchanged_with_its_options(ovms):
    client = cohere.Client(base_url=f"{ovms.base_url}/v3", api_key="unused")
    answer = client.rerank(model="ovms-rerank", query="hello", documents=["welcome", "farewell"])
    assert sorted(result.index for result in answer.results) == [0, 1]
    too_many = post(ovms, "/v3/rerank", {"model": "ovms-rerank", "query": "hello", "documents": ["x"] * 5})
    assert_openai_error(too_many, 400, "documents", "more than the 4 this model ranks in one request")
    long = post(ovms, "/v3/rerank", {"model": "ovms-rerank", "query": "hello", "documents": ["word " * 100]}).json()
    assert "to fit this model's 12 tokens per pair" in long["meta"]["warnings"][0]  # as in OVMS's own test graph
    assert long["usage"]["total_tokens"] <= 12




async def test_a_full_engine_queue_answers_503_with_retry_after_and_a_client_gone_frees_it(ovms):
    long = {"model": "busy", "query": "q", "documents": ["a document the tiny model takes a while to read " * 12] * 200}
    async with httpx.AsyncClient(base_url=ovms.base_url, timeout=60) as client:
        first = asyncio.ensure_future(client.post("/v3/rerank", json=long))  # ~48,000 tokens: seconds of work
        for _ in range(300):
            if model_metric(ovms, "ovserve_engine_requests_waiting_for_tokens", "busy") >= 1:
                break
            await asyncio.sleep(0.02)
        refused = await client.post("/v3/rerank", json={"model": "busy", "query": "q", "documents": ["short"]})
        error = assert_openai_error(refused, 503, None, "retry shortly")
        assert error["code"] == "engine_queue_full" and refused.headers["retry-after"] == "1"
        first.cancel()  # the client goes away: its job stops at the engine's next call
        started = time.monotonic()
        for _ in range(100):
            retried = await client.post("/v3/rerank", json={"model": "busy", "query": "q", "documents": ["short"]})
            if retried.status_code == 200:
                break
            await asyncio.sleep(0.05)
        # the whole first job takes the tiny model about 10 s: it stopped at its next call of 1,024 tokens
        assert retried.status_code == 200 and time.monotonic() - started < 2


# --- ovserve pull --task rerank, and the API key on the root paths ----------------------------------------------


def test_a_qwen3_reranker_pulled_with_task_rerank_is_served_as_one(tmp_path):
    store = tmp_path / "store"
    repo = {path.name: path for path in QWEN3_RERANKER.iterdir()}  # a repository named without "rerank"
    without_detokenizer = {name: path for name, path in repo.items() if "detokenizer" not in name}
    cross_encoder = {path.name: path for path in RERANKER.iterdir() if "detokenizer" not in path.name}
    with fake_hub({"someone/qwen3-small": repo, "someone/llm-ir": without_detokenizer,
                   "OpenVINO/tiny-reranker-ov": cross_encoder}) as endpoint:
        env = {"HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf-home")}
        pulled = ovserve("pull", "someone/qwen3-small", "--task", "rerank", "--models-dir", str(store), env=env)
        # as OVMS's rerank export lays it out: no detokenizer, which a reranker does not need (an LLM does)
        exported = ovserve("pull", "OpenVINO/tiny-reranker-ov", "--models-dir", str(store), env=env)
        llm = ovserve("pull", "someone/llm-ir", "--models-dir", str(store), env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert exported.returncode == 0 and model_task(store / "OpenVINO" / "tiny-reranker-ov") == "rerank"
    assert llm.returncode == 1 and "has an OpenVINO IR but no openvino_detokenizer.xml, which serving needs" in llm.stderr
    folder = store / "someone" / "qwen3-small"
    assert (folder / TASK_FILE).is_file() and model_task(folder) == "rerank"
    server = start_server(["someone/qwen3-small", "--models-dir", str(store), "--api-key", "secret"], tmp_path)
    try:
        key = {"Authorization": "Bearer secret"}
        for path in ("/rerank", "/v2/rerank", "/v3/rerank"):
            assert post(server, path, {"query": "q", "documents": ["d"]}).status_code == 401
        answer = post(server, "/rerank", {"query": "q", "documents": ["d", "e"]}, headers=key).json()
        assert answer["model"] == "someone/qwen3-small" and len(answer["results"]) == 2
        assert answer["usage"]["total_tokens"] > 2 * 60  # Qwen3-Reranker's prompt around each pair
        assert post(server, "/score", {"text_1": "q", "text_2": "d"}).status_code == 401
        assert post(server, "/score", {"text_1": "q", "text_2": "d"}, headers=key).status_code == 200
    finally:
        server.stop()


def test_task_rerank_serves_any_folder_as_a_reranker(tmp_path):
    from ovserve.cli import build_parser
    from ovserve.server.serve_models import servable_specs

    folder = tmp_path / "qwen3-small"
    shutil.copytree(QWEN3_RERANKER, folder)
    assert model_task(folder) == "text_generation"  # its files are a causal LM's
    (spec,), _ = servable_specs(build_parser().parse_args(["serve", str(folder), "--task", "rerank"]))
    assert spec.graph_path.name == "rerank.pbtxt" and spec.overrides == {"reranker": {"models_path": str(folder)}}
    with pytest.raises(ValueError, match="--max-num-seqs set an LLM engine; the reranker 'x' takes --device only"):
        servable_specs(build_parser().parse_args(["serve", str(folder), "--task", "rerank", "--model-name", "x",
                                                  "--max-num-seqs", "4"]))


# --- fuzzing ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["server", "ovms"])
def test_no_fuzzed_rerank_or_score_request_gets_a_server_error(which, request, tmp_path):
    """A bounded fuzz run (schemathesis) of /v3/rerank and /v3/score: on the cross-encoder, and on the OVMS graphs'
    cross-encoder and Qwen3-style reranker."""
    fuzzed = request.getfixturevalue(which)
    schemathesis = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert schemathesis is not None, "schemathesis is in the test extra"
    result = subprocess.run([schemathesis, "run", f"{fuzzed.base_url}/openapi.json", "--checks", "not_a_server_error",
                             "--include-path-regex", "/(rerank|score)$", "--phases", "fuzzing", "--max-examples",
                             "60", "--request-timeout", "60", "--no-color"],
                            capture_output=True, text=True, check=False, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:]
    assert " passed" in result.stdout and "failed" not in result.stdout.split("SUMMARY")[-1]
    served = httpx.get(f"{fuzzed.base_url}/v3/models").json()["data"][0]["id"]
    assert post(fuzzed, "/v3/score", {"model": served, "text_1": QUERY, "text_2": "x"}).status_code == 200
