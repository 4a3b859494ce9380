"""The rerank kind on the tiny committed rerankers: calls bounded in documents and tokens, every score back at its
document's index whatever order GenAI returns them in, jobs through the engine boundary (in a thread and behind a
process), a full queue refused, and which folders are rerankers."""

import asyncio
import json
import shutil

import openvino_genai as ov_genai
import pytest

from ovserve.engine.call_client import CallEngine
from ovserve.engine.kinds import CallSignal
from ovserve.engine.process import EngineBusyError
from ovserve.engine.rerank_kind import (
    RerankJob,
    RerankRunner,
    RerankSpec,
    ScoreJob,
    is_qwen3,
    is_reranker,
    logits_bound,
    plan_batches,
)
from tests.tiny_models import QWEN3_RERANKER, RERANKER, WHISPER

DOCUMENTS = ("Paris is the capital of France.", "The cat sat on the mat.", "OpenVINO runs models on CPUs.",
             "A much longer document about rivers, mountains and the weather " * 6, "short", "Berlin.",
             "Quantum computers use qubits.", "bread and butter")


@pytest.mark.parametrize(("lengths", "max_batch", "max_tokens"), [
    ([5, 50, 7, 300, 12, 12, 1], 3, 400), ([10] * 20, 4, 10_000), ([600, 500], 8, 100), ([], 2, 10)])
def test_calls_take_each_document_once_longest_first_within_their_bounds(lengths, max_batch, max_tokens):
    batches = plan_batches(lengths, max_batch, max_tokens)
    assert sorted(index for batch in batches for index in batch) == list(range(len(lengths)))
    for batch in batches:
        longest = max(lengths[index] for index in batch)
        assert lengths[batch[0]] == longest and len(batch) <= max_batch
        assert len(batch) == 1 or len(batch) * longest <= max_tokens  # a pair longer than the bound goes alone


@pytest.fixture(scope="module", params=[RERANKER, QWEN3_RERANKER], ids=["cross_encoder", "qwen3"])
def engine(request):
    """The kind in a thread (as fast tests run it), two documents a call so that a job takes several calls."""
    loop = asyncio.new_event_loop()
    engine = CallEngine(RerankSpec(str(request.param), max_batch=2), in_process=True)
    loop.run_until_complete(engine.start())
    yield loop, engine
    loop.run_until_complete(engine.stop())
    loop.close()


def run(engine, job):
    loop, engine = engine
    return loop.run_until_complete(engine.call(job))


def lengths(documents):
    return tuple(len(document.split()) + 8 for document in documents)


def test_each_score_comes_back_at_its_documents_index(engine):
    ranked = run(engine, RerankJob("what is the capital of france?", DOCUMENTS, lengths(DOCUMENTS)))
    together = dict(ranked)
    assert sorted(together) == list(range(len(DOCUMENTS)))
    assert [score for _, score in ranked] == sorted(together.values(), reverse=True)
    alone = [dict(run(engine, RerankJob("what is the capital of france?", (document,), (9,))))[0]
             for document in DOCUMENTS]
    assert max(alone) - min(alone) > 0.1  # the scores differ enough for a misplaced one to show
    for index, score in enumerate(alone):  # batched otherwise, the same score, up to the CPU's arithmetic
        assert together[index] == pytest.approx(score, abs=0.02)
    reversed_ = dict(run(engine, RerankJob("what is the capital of france?", DOCUMENTS[::-1],
                                           lengths(DOCUMENTS[::-1]))))
    for index in range(len(DOCUMENTS)):
        assert reversed_[len(DOCUMENTS) - 1 - index] == pytest.approx(together[index], abs=0.02)


def test_top_n_keeps_the_best_and_ties_keep_the_documents_order(engine):
    ranked = run(engine, RerankJob("a query", DOCUMENTS, lengths(DOCUMENTS)))
    assert run(engine, RerankJob("a query", DOCUMENTS, lengths(DOCUMENTS), top_n=3)) == ranked[:3]
    same = run(engine, RerankJob("a query", ("same text",) * 4, (10,) * 4))  # two calls of the same shape
    assert [index for index, _ in same] == [0, 1, 2, 3]


def test_score_pairs_each_text_with_its_query(engine):
    queries = ("capital of france", "pets")
    scores = run(engine, ScoreJob(queries, (0, 1, 0, 1), DOCUMENTS[:4], lengths(DOCUMENTS[:4])))
    assert len(scores) == 4
    for index, owner in enumerate((0, 1, 0, 1)):
        (alone,) = run(engine, ScoreJob((queries[owner],), (0,), (DOCUMENTS[index],), (9,)))
        assert scores[index] == pytest.approx(alone, abs=0.02)


async def test_behind_a_process_past_the_bound_jobs_are_refused_at_once_and_aborts_free_the_engine():
    engine = CallEngine(RerankSpec(str(QWEN3_RERANKER), max_batch=1, max_queue=1), step_timeout=30)
    await engine.start()
    try:
        long = ("a document that takes the tiny model a while to read " * 40,) * 400
        held = [engine.submit(RerankJob("query", long, (500,) * 400)) for _ in range(2)]
        with pytest.raises(EngineBusyError) as refused:
            engine.submit(RerankJob("query", ("one too many",), (10,)))
        assert refused.value.status == 503 and refused.value.code == "engine_queue_full"
        for request in held:
            request.abort()  # the running one stops at its next call, the queued one never runs
        started = asyncio.get_running_loop().time()
        assert [index for index, _ in await engine.call(RerankJob("query", ("a", "b"), (5, 5)))] in ([0, 1], [1, 0])
        assert asyncio.get_running_loop().time() - started < 5  # the 400 long documents take the tiny model ~30 s
    finally:
        await engine.stop()


async def test_concurrent_calls_run_on_pipelines_of_their_own_and_agree():
    engine = CallEngine(RerankSpec(str(QWEN3_RERANKER), concurrency=2, max_batch_tokens=1024,
                                   plugin_config={"INFERENCE_PRECISION_HINT": "f32"}), in_process=True)
    await engine.start()
    try:
        documents = ("a document the tiny model reads " * 12,) * 24
        alone = await engine.call(RerankJob("query", documents, (200,) * 24))
        together = await asyncio.gather(*(engine.call(RerankJob("query", documents, (200,) * 24)) for _ in range(3)))
        assert all(result == alone for result in together)  # the same calls, f32 on every CPU: the same numbers
    finally:
        await engine.stop()


def test_a_folder_that_is_no_reranker_fails_to_load_saying_why():
    loop = asyncio.new_event_loop()
    try:
        engine = CallEngine(RerankSpec(str(WHISPER)), in_process=True)
        with pytest.raises(Exception, match="whisper cannot be loaded"):
            loop.run_until_complete(engine.start())
    finally:
        loop.close()


def write(folder, name, content):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(content))


def test_rerankers_are_told_as_ovms_tells_them(tmp_path):
    assert is_reranker(RERANKER) and is_reranker(QWEN3_RERANKER) and not is_reranker(WHISPER)
    assert is_qwen3(QWEN3_RERANKER) and not is_qwen3(RERANKER)
    unnamed = tmp_path / "qwen3-small"  # a Qwen3 causal LM says it is a reranker by its name only
    shutil.copytree(QWEN3_RERANKER, unnamed)
    assert not is_reranker(unnamed)
    write(tmp_path / "cross", "modules.json", [{"type": "sentence_transformers.cross_encoder.LogitScore"}])
    write(tmp_path / "bi", "modules.json", [{"type": "sentence_transformers.models.Pooling"}])
    write(tmp_path / "bi", "config.json", {"architectures": ["BertForSequenceClassification"]})
    assert is_reranker(tmp_path / "cross")
    assert not is_reranker(tmp_path / "bi")  # modules.json decides where there is one
    write(tmp_path / "seq-cls", "config.json", {"architectures": ["XLMRobertaForSequenceClassification"]})
    assert is_reranker(tmp_path / "seq-cls") and not is_reranker(tmp_path / "missing")


def test_a_causal_lm_rerankers_calls_are_bound_by_its_logits():
    """GenAI's pipeline computes a causal LM's logits over the whole vocabulary at every position: 1 GiB of them holds
    5,461 tokens of the tiny Qwen3's 49,152-token vocabulary, and 1,769 of Qwen3-Reranker's 151,669."""
    assert logits_bound(QWEN3_RERANKER) == 5461 and logits_bound(RERANKER) is None and logits_bound(WHISPER) is None


def test_a_cancelled_job_stops_between_calls():
    calls = []

    class Pipeline:  # counts the calls of a real job on the real pipeline
        def __init__(self, inner):
            self.inner = inner

        def rerank(self, query, texts):
            calls.append(len(texts))
            cancelled.set()  # the caller goes away during the first call
            return self.inner.rerank(query, texts)

    config = ov_genai.TextRerankPipeline.Config()
    config.top_n = 2
    cancelled = CallSignal()
    runner = RerankRunner([Pipeline(ov_genai.TextRerankPipeline(str(RERANKER), "CPU", config))], 2, 1000)
    assert runner.score("query", DOCUMENTS, lengths(DOCUMENTS), cancelled) is None
    assert calls == [2]
