"""What the rerank engine is sent: a request's queries and documents as the model reads them, each pair's tokens
counted, documents cut to fit the model, and the whole request bounded, all before the engine sees it.

Runs in the HTTP process on the model's tokenizer alone (no weights). A cross-encoder reads a pair as GenAI's
tokenizer pairs it (``[CLS] query [SEP] document [SEP]``); a Qwen3-style reranker reads query and document
concatenated, so its prompt is written around them here, as Qwen3-Reranker's model card writes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ovserve.engine.rerank_kind import is_qwen3
from ovserve.engine.settings import IR_DETOKENIZER
from ovserve.errors import RequestError

#: Qwen3-Reranker's prompt (its model card): a system message, the instruction and query, then the document, and
#: the start of an answer whose first token the model says "yes" or "no" to.
QWEN3_SYSTEM = ('Judge whether the Document meets the requirements based on the Query and the Instruct provided. '
                'Note that the answer can only be "yes" or "no".')
#: The instruction its model card uses when the task says none.
QWEN3_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
#: A query that begins so was written in the model's prompt by the client (as OVMS's rerank demo does): it is sent
#: as it is, with its documents.
CHAT_START = "<|im_start|>"
#: Tokens allowed for text joined without a separator token: a tokenizer may split the joint otherwise than the
#: parts it counted apart.
JOINT_SLACK = 2
#: Texts tokenized together, padded to the longest of them.
TOKENIZE_BATCH = 32


def _numpy_bridge_once() -> None:
    """Read one OpenVINO tensor as NumPy here, in the thread that imports this module. The first such read sets up
    pybind11's NumPy bridge, and two threads doing it at once deadlock (one holds a C++ static's lock and waits for
    the GIL, the other the reverse): that hung a server loading two rerank graphs, whose tokenizers load in threads."""
    import numpy as np
    import openvino as ov

    ov.Tensor(np.zeros(1, dtype=np.int64)).data  # noqa: B018 - the read is the point


_numpy_bridge_once()


@dataclass(frozen=True)
class PromptFormat:
    """How a query and a document become the texts the model reads (as they are, by default)."""

    query_prefix: str = ""
    query_suffix: str = ""
    document_prefix: str = ""
    document_suffix: str = ""

    def query(self, text: str) -> str:
        return f"{self.query_prefix}{text}{self.query_suffix}"

    def document(self, text: str) -> str:
        return f"{self.document_prefix}{text}{self.document_suffix}"


def qwen3_format(instruction: str = QWEN3_INSTRUCTION) -> PromptFormat:
    """Qwen3-Reranker's prompt around a query and a document."""
    return PromptFormat(f"<|im_start|>system\n{QWEN3_SYSTEM}<|im_end|>\n<|im_start|>user\n<Instruct>: "
                        f"{instruction}\n<Query>: ", "\n", "<Document>: ",
                        "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")


@dataclass
class ScoringInputs:
    """A request's pairs as the engine gets them: the queries (formatted), which query each document goes with,
    the documents (formatted, cut where they had to be), each pair's tokens, and what was cut."""

    queries: list[str]
    query_of: list[int]
    documents: list[str]
    lengths: list[int]
    warnings: list[str] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(self.lengths)


class RerankInputs:
    """The model's tokenizer and limits, turning requests into :class:`ScoringInputs` (call it in a thread: it
    tokenizes every text)."""

    def __init__(self, folder: Path, max_length: int, max_request_tokens: int,
                 instruction: str = QWEN3_INSTRUCTION) -> None:
        import openvino_genai as ov_genai

        self.qwen3 = is_qwen3(folder)
        # as TextRerankPipeline does: pairs where the tokenizer can make them, never for Qwen3
        try:
            self.tokenizer = ov_genai.Tokenizer(str(folder), add_second_input=not self.qwen3)
        except RuntimeError as error:
            if "Post processor is not present" not in str(error):
                raise
            raise ValueError(f"{folder}: its tokenizer (openvino_tokenizer.xml) cannot pair a query with a document: "
                             f"it was converted without special tokens, as OVMS's export_model.py rerank_ov writes it, "
                             f"and OpenVINO GenAI's TextRerankPipeline needs them. Export the model with 'optimum-cli "
                             f"export openvino --model ID --task text-classification DIR' (or 'ovserve pull ID'), or "
                             f"take an OpenVINO/*-ov repository") from None
        self.paired = not self.qwen3 and self.tokenizer.supports_paired_input()
        #: Whether documents can be cut (decoded back to text): OVMS's rerank exports have no detokenizer.
        self.decodes = (folder / IR_DETOKENIZER).is_file()
        self.max_length = max_length
        self.max_request_tokens = max_request_tokens
        self.template = qwen3_format(instruction) if self.qwen3 else PromptFormat()
        self.specials = self._special_tokens()

    def _special_tokens(self) -> int:
        """The tokens the tokenizer adds to a pair (or, for texts joined as one, to that text)."""
        alone = len(self.token_ids(["a"])[0]) + len(self.token_ids(["b"])[0])
        if self.paired:
            both = self.tokenizer.encode(["a"], ["b"]).attention_mask.data.sum()
            return int(both) - alone
        return int(self.tokenizer.encode(["a"]).attention_mask.data.sum()) - len(self.token_ids(["a"])[0])

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's tokens, without special tokens (tokenized in small batches of similar lengths)."""
        found: list[list[int]] = [[] for _ in texts]
        order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
        for start in range(0, len(order), TOKENIZE_BATCH):
            batch = order[start:start + TOKENIZE_BATCH]
            try:
                encoded = self.tokenizer.encode([texts[index] for index in batch], add_special_tokens=False,
                                                padding_side="right")
            except RuntimeError:  # the tokenizer fails on several texts that all give no token (blanks)
                for index in batch:
                    found[index] = self.tokenizer.encode(texts[index], add_special_tokens=False).input_ids.data[0]\
                        .tolist()
                continue
            ids, mask = encoded.input_ids.data, encoded.attention_mask.data
            for row, index in enumerate(batch):
                found[index] = ids[row, : int(mask[row].sum())].tolist()
        return found

    def prepare(self, queries: Sequence[str], query_of: Sequence[int], documents: Sequence[str], *, fit: bool,
                max_tokens_per_doc: int | None = None, names: tuple[str, str] = ("query", "documents"),
                cut_hint: str = "") -> ScoringInputs:
        """The pairs (``queries[query_of[i]]``, ``documents[i]``) ready for the engine. A document too long for the
        model with its query is cut to fit if ``fit`` (and noted in ``warnings``), else refused (``cut_hint`` says how
        to have it cut); one longer than ``max_tokens_per_doc`` is cut to it. ``names`` are the request's fields for
        the queries and documents, for errors. Raises :class:`RequestError` (400) naming the field."""
        empty = next((number for number, ids in enumerate(self.token_ids(queries)) if not ids), None)
        if empty is not None:  # GenAI's tokenizer fails on a pair with nothing on either side
            where = names[0] if len(queries) == 1 else f"{names[0]}[{empty}]"
            raise RequestError(f"{where} has no token this model reads (it is blank, or holds only characters the "
                               f"tokenizer drops): there is nothing to rank by", param=names[0], code="invalid_value")
        raw = [self.qwen3 and query.startswith(CHAT_START) for query in queries]
        formats = [PromptFormat() if as_is else self.template for as_is in raw]
        query_lengths = [len(ids) for ids in self.token_ids([f.query(q) for f, q in zip(formats, queries,
                                                                                          strict=True)])]
        wrapping = [len(ids) + (0 if self.paired else JOINT_SLACK)
                    for ids in self.token_ids([f.document("") for f in formats])]
        inputs = ScoringInputs([f.query(q) for f, q in zip(formats, queries, strict=True)], list(query_of), [], [])
        for index, ids in enumerate(self.token_ids(documents)):
            owner = query_of[index]
            fixed = self.specials + wrapping[owner] + query_lengths[owner]
            room = self.max_length - fixed
            if room < 1:
                where = names[0] if len(queries) == 1 else f"{names[0]}[{owner}]"
                raise RequestError(f"{where} has {query_lengths[owner]} tokens: with a document it leaves no room in "
                                   f"this model's {self.max_length} tokens per pair; shorten it", param=names[0],
                                   code="context_length_exceeded")
            text = documents[index]
            limit = min(room, max_tokens_per_doc or room)
            if len(ids) > limit:
                self._check_cut(f"{names[1]}[{index}]", len(ids), fixed, room, fit=fit,
                                cuttable=self.decodes and not raw[owner], hint=cut_hint)
                if limit == room:  # cut for the model, not as the request asked
                    inputs.warnings.append(f"{names[1]}[{index}] was cut to {limit} of its {len(ids)} tokens to fit "
                                           f"this model's {self.max_length} tokens per pair with the query")
                text, ids = self.tokenizer.decode(ids[:limit], skip_special_tokens=False), ids[:limit]
            inputs.documents.append(formats[owner].document(text))
            inputs.lengths.append(fixed + len(ids))
        self._check_budget(inputs.tokens, names[1])
        return inputs

    def _check_cut(self, where: str, tokens: int, fixed: int, room: int, *, fit: bool, cuttable: bool,
                   hint: str) -> None:
        """Refuse a document that would have to be cut where it may not be: too long for the model and not ``fit``,
        or longer than the request's ``max_tokens_per_doc`` where it cannot be cut (``cuttable``: the model has a
        detokenizer, and the prompt was not written by the client, whose end a cut would take off)."""
        why = ("" if cuttable else "; this model has no detokenizer (openvino_detokenizer.xml) to cut it with"
               if not self.decodes else "; a prompt written by the client is not cut")
        if tokens > room and not (fit and cuttable):
            raise RequestError(f"{where} has {tokens} tokens; with the query, the pair has {fixed + tokens}, more "
                               f"than this model's {self.max_length}{why}; shorten it{hint if cuttable else ''}",
                               param=where.split("[")[0], code="context_length_exceeded")
        if not cuttable:
            raise RequestError(f"{where} has {tokens} tokens, more than max_tokens_per_doc{why}; shorten it, or "
                               f"leave max_tokens_per_doc out", param="max_tokens_per_doc",
                               code="unsupported_parameter")

    def _check_budget(self, tokens: int, name: str) -> None:
        if tokens > self.max_request_tokens:
            raise RequestError(f"the request has {tokens} tokens in all (each document with its query), more than "
                               f"the {self.max_request_tokens} one request may have; split it", param=name,
                               code="max_tokens_per_request")

    def describe(self) -> dict[str, Any]:
        """How the model reads pairs, for the load log."""
        return {"pairs": "tokenizer pairs" if self.paired else "joined", "prompt": "qwen3" if self.qwen3 else "none",
                "max_length": self.max_length}
