"""The reranker's limits as the graph and the model set them: tokens a pair, and tokens a request."""

import logging

from ovserve.calculators.rerank.model import MAX_REQUEST_SECONDS, RerankCalculatorOVOptions, pair_limit, request_limit
from tests.tiny_models import QWEN3_RERANKER, RERANKER


def test_the_pair_limit_is_the_models_context_and_for_a_causal_lm_what_a_call_holds(tmp_path):
    assert pair_limit(RERANKER, None) == 512  # BERT's 512 positions
    assert pair_limit(QWEN3_RERANKER, None) == 2048 and pair_limit(QWEN3_RERANKER, None, 1769) == 1769
    assert pair_limit(tmp_path, None) == 8192 and pair_limit(RERANKER, 64) == 64  # no config; the graph's own


def test_a_request_holds_the_engine_for_at_most_150_s_at_the_measured_speed(caplog):
    options = RerankCalculatorOVOptions(models_path="x")
    assert request_limit(options, speed=1e9, max_length=512) == 300_000  # a fast engine: the default bound
    slow = 40.0  # tokens/s: about what Qwen3-Reranker-0.6B scores on 2 CPU cores
    assert request_limit(options, speed=slow, max_length=512) == int(slow * MAX_REQUEST_SECONDS) == 6000
    assert request_limit(options, speed=0.001, max_length=512) == 512  # at least one whole pair
    assert request_limit(options, speed=None, max_length=8) == 300_000  # not measured: no warm-up text fits
    given = RerankCalculatorOVOptions(models_path="x", max_request_tokens=100_000)
    with caplog.at_level(logging.WARNING):
        assert request_limit(given, speed=slow, max_length=512) == 100_000  # the graph's own, with a warning
    assert "one such request holds it for 2500 s, and the requests behind it wait" in caplog.text
