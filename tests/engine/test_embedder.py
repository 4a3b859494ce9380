"""The embedding model's parts: settings read from a sentence-transformers folder, pooling, and dynamic batching."""

import asyncio
import json

import numpy as np
import pytest

from ovserve.engine.embedder import BatchingEncoder, EncoderSettings, encoder_settings, pool_embeddings


class CountingEncoder:
    """Stands in for the embedding engine: each row's embedding is [its first token id], and every run is recorded."""

    dimensions = 1

    def __init__(self, fail: bool = False) -> None:
        self.runs: list[int] = []
        #: The first token of each row, run by run.
        self.batches: list[list[int]] = []
        self.fail = fail

    async def embed(self, token_lists):
        await asyncio.sleep(0)  # the engine answers later, as the real one does
        self.runs.append(len(token_lists))
        self.batches.append([tokens[0] for tokens in token_lists])
        if self.fail:
            raise RuntimeError("the device went away")
        return np.array([[float(tokens[0])] for tokens in token_lists], dtype=np.float32)


def test_settings_come_from_the_models_own_files(tmp_path):
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    (tmp_path / "modules.json").write_text(json.dumps([{"type": "sentence_transformers.models.Transformer"},
                                                       {"type": "sentence_transformers.models.Pooling"}]))
    (tmp_path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128}))
    assert encoder_settings(tmp_path) == EncoderSettings(pooling="MEAN", normalize=False, max_length=128)
    (tmp_path / "modules.json").write_text(json.dumps([{"type": "sentence_transformers.models.Normalize"}]))
    assert encoder_settings(tmp_path).normalize is True


def test_a_bare_folder_gets_cls_pooling_normalized_at_the_models_length(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 8192}))
    assert encoder_settings(tmp_path) == EncoderSettings(pooling="CLS", normalize=True, max_length=8192)


async def test_concurrent_requests_share_one_run_and_each_gets_its_own_rows():
    encoder = CountingEncoder()
    batcher = BatchingEncoder(encoder, max_batch=32, wait=0.05)
    results = await asyncio.gather(*(batcher.embed([[i], [i + 100]]) for i in range(5)))
    assert encoder.runs == [10]
    for i, rows in enumerate(results):
        assert rows[:, 0].tolist() == [i, i + 100]
    await batcher.close()


async def test_a_request_bigger_than_the_batch_runs_in_pieces():
    encoder = CountingEncoder()
    batcher = BatchingEncoder(encoder, max_batch=4, wait=0)
    rows = await batcher.embed([[i] for i in range(10)])
    assert encoder.runs == [4, 4, 2]
    assert rows[:, 0].tolist() == list(range(10))
    await batcher.close()


async def test_a_failed_run_fails_its_requests_and_the_next_ones_still_run():
    encoder = CountingEncoder(fail=True)
    batcher = BatchingEncoder(encoder, max_batch=8, wait=0.01)
    outcomes = await asyncio.gather(batcher.embed([[1]]), batcher.embed([[2]]), return_exceptions=True)
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes)
    encoder.fail = False
    assert (await batcher.embed([[7]]))[0, 0] == 7
    await batcher.close()


@pytest.mark.parametrize("pooling", ["CLS", "MEAN", "LAST"])
def test_pooling_over_padded_rows_ignores_the_padding(pooling):
    hidden = np.array([[[1.0], [3.0], [99.0]], [[2.0], [4.0], [6.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0], [1, 1, 1]])
    expected = {"CLS": [1.0, 2.0], "MEAN": [2.0, 4.0], "LAST": [3.0, 6.0]}[pooling]
    assert pool_embeddings(hidden, mask, EncoderSettings(pooling=pooling, normalize=False))[:, 0].tolist() == expected


async def test_a_small_request_is_not_held_back_by_a_big_one():
    encoder = CountingEncoder()
    batcher = BatchingEncoder(encoder, max_batch=4, wait=0.01)
    big = asyncio.ensure_future(batcher.embed([[i] for i in range(40)]))
    small = asyncio.ensure_future(batcher.embed([[1000]]))
    assert (await small)[0, 0] == 1000
    # the small one rode in the first run, beside a share of the big one (later runs may have begun meanwhile)
    assert 1000 in encoder.batches[0] and len(encoder.batches[0]) == 4
    assert (await big)[:, 0].tolist() == list(range(40))
    await batcher.close()


async def test_the_rows_of_a_request_whose_client_left_are_not_computed():
    encoder = CountingEncoder()
    batcher = BatchingEncoder(encoder, max_batch=4, wait=0.01)
    abandoned = asyncio.ensure_future(batcher.embed([[i] for i in range(400)]))
    await asyncio.sleep(0)
    abandoned.cancel()
    assert (await batcher.embed([[7]]))[0, 0] == 7
    assert sum(encoder.runs) < 20  # not the 400 rows nobody waits for
    await batcher.close()
