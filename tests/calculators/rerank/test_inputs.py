"""What the rerank front end sends the engine, on the tiny rerankers' own tokenizers: pairs counted as the model
reads them, Qwen3-Reranker's prompt written around query and document, documents cut to fit or refused, and the
bounds of a request."""

import shutil

import openvino_genai as ov_genai
import pytest

from ovserve.calculators.rerank.inputs import JOINT_SLACK, QWEN3_INSTRUCTION, RerankInputs, qwen3_format
from ovserve.errors import RequestError
from tests.tiny_models import QWEN3_RERANKER, RERANKER

QUERY = "what is the capital of france?"
DOCUMENTS = ["Paris is the capital of France.", "cats", "A longer document about rivers and mountains " * 4]


@pytest.fixture(scope="module")
def bert() -> RerankInputs:
    return RerankInputs(RERANKER, max_length=512, max_request_tokens=10_000)


@pytest.fixture(scope="module")
def qwen3() -> RerankInputs:
    return RerankInputs(QWEN3_RERANKER, max_length=512, max_request_tokens=10_000)


def test_a_cross_encoders_pairs_are_counted_as_its_tokenizer_pairs_them(bert):
    inputs = bert.prepare([QUERY], [0, 0, 0], DOCUMENTS, fit=True)
    assert inputs.queries == [QUERY] and inputs.documents == DOCUMENTS and not inputs.warnings
    paired = ov_genai.Tokenizer(str(RERANKER), add_second_input=True)
    for document, length in zip(DOCUMENTS, inputs.lengths, strict=True):
        assert length == int(paired.encode([QUERY], [document]).attention_mask.data.sum())  # [CLS] q [SEP] d [SEP]
    assert inputs.tokens == sum(inputs.lengths)


def test_a_qwen3_reranker_gets_its_prompt_written_around_query_and_document(qwen3):
    inputs = qwen3.prepare([QUERY], [0], [DOCUMENTS[0]], fit=True)
    prompt = inputs.queries[0] + inputs.documents[0]
    assert prompt.startswith("<|im_start|>system\nJudge whether the Document meets the requirements")
    assert f"<Instruct>: {QWEN3_INSTRUCTION}\n<Query>: {QUERY}\n<Document>: {DOCUMENTS[0]}<|im_end|>\n" in prompt
    assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    whole = len(qwen3.token_ids([prompt])[0])
    # counted in parts, never fewer than the model reads: the joints' slack more, and a token a joint merges
    assert whole <= inputs.lengths[0] <= whole + JOINT_SLACK + 2


def test_a_qwen3_prompt_the_client_wrote_is_sent_as_it_is(qwen3):
    fmt = qwen3_format("Find the answer")
    query, document = fmt.query(QUERY), fmt.document(DOCUMENTS[0])  # as OVMS's rerank demo writes them
    inputs = qwen3.prepare([query], [0], [document], fit=True)
    assert inputs.queries == [query] and inputs.documents == [document]


def test_a_document_too_long_for_the_model_is_cut_to_fit_with_a_warning(bert, qwen3):
    long = "word " * 2000
    for model in (bert, qwen3):
        inputs = model.prepare([QUERY], [0, 0], [long, "cats"], fit=True)
        around = inputs.lengths[1] - len(model.token_ids(["cats"])[0])  # the query, specials and prompt of a pair
        assert inputs.lengths[0] == 512
        tokens = len(model.token_ids([long])[0])  # 2000 words: 2000 tokens, or 2001 with the last space
        assert inputs.warnings == [f"documents[0] was cut to {512 - around} of its {tokens} tokens to fit this "
                                   f"model's 512 tokens per pair with the query"]
    qwen3_cut = qwen3.prepare([QUERY], [0], [long], fit=True).documents[0]
    assert qwen3_cut.startswith("<Document>: word word") and qwen3_cut.endswith("</think>\n\n")  # the prompt's end kept


def test_max_tokens_per_doc_cuts_documents_without_a_warning(bert):
    inputs = bert.prepare([QUERY], [0, 0], [DOCUMENTS[2], "cats"], fit=True, max_tokens_per_doc=3)
    assert len(bert.token_ids([inputs.documents[0]])[0]) == 3 and inputs.documents[1] == "cats"
    assert not inputs.warnings


def test_where_documents_may_not_be_cut_one_too_long_is_refused_naming_it(bert, qwen3):
    with pytest.raises(RequestError, match=r"text_2\[1\] has 2000 tokens; with the query, the pair has \d+, more than "
                                           r"this model's 512; shorten it, or send truncate_prompt_tokens: -1") as error:
        bert.prepare(["q"], [0, 0], ["fine", "word " * 2000], fit=False, names=("text_1", "text_2"),
                     cut_hint=", or send truncate_prompt_tokens: -1 to have it cut")
    assert error.value.param == "text_2" and error.value.status == 400
    written = qwen3_format()  # a prompt the client wrote: cutting it would cut its end
    with pytest.raises(RequestError, match=r"documents\[0\] has \d+ tokens"):
        qwen3.prepare([written.query("q")], [0], [written.document("word " * 2000)], fit=True)


def test_a_query_that_leaves_no_room_and_a_request_over_its_tokens_are_refused(bert):
    with pytest.raises(RequestError, match="query has 600 tokens: with a document it leaves no room") as error:
        bert.prepare(["word " * 600], [0], ["doc"], fit=True)
    assert error.value.param == "query"
    with pytest.raises(RequestError, match=r"text_1\[1\] has 600 tokens"):
        bert.prepare(["q", "word " * 600], [0, 1], ["a", "b"], fit=True, names=("text_1", "text_2"))
    with pytest.raises(RequestError, match=r"the request has 1\d{4} tokens in all .* more than the 10000") as error:
        bert.prepare([QUERY], [0] * 100, ["word " * 100] * 100, fit=True)
    assert error.value.param == "documents" and error.value.code == "max_tokens_per_request"


def test_blank_documents_are_counted_and_a_query_without_tokens_is_refused(bert, qwen3):
    for model in (bert, qwen3):  # the tokenizer fails on a batch of texts that all give no token
        assert len(model.prepare([QUERY], [0, 0, 0], [" ", "\n", "cats"], fit=True).lengths) == 3
    for query in (" \t", "\u0000"):  # blank, or dropped by BERT's tokenizer (found by the fuzz run)
        with pytest.raises(RequestError, match="query has no token this model reads") as error:
            bert.prepare([query], [0], ["\u0000"], fit=True)
        assert error.value.param == "query"


def test_without_a_detokenizer_documents_that_would_be_cut_are_refused(tmp_path):
    """OVMS's rerank export writes no openvino_detokenizer.xml: GenAI scores with such a model, but nothing can
    turn a cut document's tokens back into text."""
    folder = tmp_path / "ovms-export"
    shutil.copytree(RERANKER, folder, ignore=shutil.ignore_patterns("openvino_detokenizer.*"))
    model = RerankInputs(folder, max_length=512, max_request_tokens=10_000)
    assert model.prepare([QUERY], [0], ["short enough"], fit=True, max_tokens_per_doc=5).documents == ["short enough"]
    with pytest.raises(RequestError, match=r"documents\[0\] has 2000 tokens; .* this model has no detokenizer "
                                           r"\(openvino_detokenizer.xml\) to cut it with; shorten it$") as error:
        model.prepare([QUERY], [0], ["word " * 2000], fit=True)
    assert error.value.param == "documents"
    with pytest.raises(RequestError, match="more than max_tokens_per_doc; this model has no detokenizer") as error:
        model.prepare([QUERY], [0], ["word " * 20], fit=True, max_tokens_per_doc=5)
    assert error.value.param == "max_tokens_per_doc"


def test_a_prompt_the_client_wrote_is_never_cut(qwen3):
    written = qwen3_format()
    with pytest.raises(RequestError, match="a prompt written by the client is not cut") as error:
        qwen3.prepare([written.query("q")], [0], [written.document("word " * 20)], fit=True, max_tokens_per_doc=5)
    assert error.value.param == "max_tokens_per_doc"


def test_a_tokenizer_converted_without_special_tokens_fails_the_load_saying_how_to_export_one(tmp_path):
    """OVMS's export_model.py rerank_ov converts the tokenizer with add_special_tokens=False (its own node adds them);
    GenAI's pipeline cannot pair with such a tokenizer. All-MiniLM's tokenizer, as ovserve's BERT export writes it,
    has no pair post-processor either."""
    from ovserve.store.fetch import DEFAULT_EMBEDDING_MODEL, pull

    folder = tmp_path / "ovms-rerank-export"
    shutil.copytree(RERANKER, folder, ignore=shutil.ignore_patterns("openvino_*tokenizer.*"))
    for path in pull(DEFAULT_EMBEDDING_MODEL, quiet=True).glob("openvino_tokenizer.*"):
        shutil.copy(path, folder / path.name)
    with pytest.raises(ValueError, match=r"cannot pair a query with a document: .* OVMS's export_model.py rerank_ov "
                                         r".*optimum-cli export openvino --model ID --task text-classification DIR"):
        RerankInputs(folder, max_length=512, max_request_tokens=10_000)
