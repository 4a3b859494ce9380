"""Stored chat completions through the official client, as OpenAI's own lesson runs them: create with
store=True, list, retrieve, read the messages, update the metadata, delete; per API key, and across a restart."""

import httpx
import openai
import pytest

from tests.conftest import MODEL_NAME, start_server
from tests.server.test_bad_input import assert_openai_error

pytestmark = pytest.mark.slow

KEYS = ("first-key", "second-key")


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    return tmp_path_factory.mktemp("store") / "store.sqlite3"


def serve(default_model, store_path, tmp):
    return start_server(["--model", str(default_model), "--model-name", MODEL_NAME, "--store-path", str(store_path),
                         *(arg for key in KEYS for arg in ("--api-key", key))], tmp)


@pytest.fixture(scope="module")
def stored(default_model, store_path, tmp_path_factory):
    server = serve(default_model, store_path, tmp_path_factory.mktemp("stored"))
    yield server
    server.stop()


def client(server, key: str = KEYS[0]) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v3", api_key=key, max_retries=0)


def ask(server, question: str, **fields):
    return client(server).chat.completions.create(model=MODEL_NAME, max_tokens=12, temperature=0,
                                                  messages=[{"role": "user", "content": question}], **fields)


def test_the_lesson_flow_create_list_retrieve_and_feed_the_next_request(stored):
    answer = ask(stored, "What is the capital of France?", store=True, metadata={"lesson": "flow"})
    api = client(stored).chat.completions
    listed = api.list(metadata={"lesson": "flow"})
    assert [c.id for c in listed.data] == [answer.id] and listed.has_more is False
    kept = api.retrieve(answer.id)
    assert kept.choices[0].message.content == answer.choices[0].message.content
    assert kept.metadata == {"lesson": "flow"} and kept.usage.total_tokens == answer.usage.total_tokens
    (message,) = api.messages.list(answer.id).data
    assert message.id == f"{answer.id}-0" and message.content == "What is the capital of France?"
    follow_up = api.create(model=MODEL_NAME, max_tokens=8, messages=[
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": kept.choices[0].message.content},
        {"role": "user", "content": "And of Italy?"}])
    assert follow_up.choices[0].message.content


def test_a_streamed_completion_is_kept_as_the_text_that_was_streamed(stored):
    stream = ask(stored, "Count to five.", store=True, stream=True, stream_options={"include_usage": True},
                 metadata={"kind": "streamed"})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    kept = client(stored).chat.completions.retrieve(chunks[0].id)
    assert kept.object == "chat.completion" and kept.choices[0].message.content == text
    assert kept.choices[0].finish_reason == "length" and kept.usage.completion_tokens == 12


def test_pages_metadata_updates_and_deletes(stored):
    ids = [ask(stored, f"Say the number {n}.", store=True, metadata={"batch": "pages"}).id for n in range(3)]
    api = client(stored).chat.completions
    first = api.list(metadata={"batch": "pages"}, limit=2)
    assert [c.id for c in first.data] == ids[:2] and first.has_more
    assert [c.id for c in api.list(metadata={"batch": "pages"}, after=ids[1]).data] == ids[2:]
    assert [c.id for c in api.list(metadata={"batch": "pages"}, order="desc").data] == ids[::-1]
    assert [c.id for c in api.list(metadata={"batch": "pages"}, model=MODEL_NAME).data] == ids
    assert api.list(metadata={"batch": "pages"}, model="another").data == []
    assert api.update(ids[0], metadata={"batch": "pages", "starred": "yes"}).metadata["starred"] == "yes"
    deleted = api.delete(ids[0])
    assert deleted.deleted and deleted.id == ids[0] and deleted.object == "chat.completion.deleted"
    with pytest.raises(openai.NotFoundError):
        api.retrieve(ids[0])


def test_a_key_sees_only_what_it_stored(stored):
    mine = ask(stored, "Hello.", store=True)
    theirs = client(stored, KEYS[1]).chat.completions
    assert mine.id not in [c.id for c in theirs.list(limit=100).data]
    with pytest.raises(openai.NotFoundError):
        theirs.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        theirs.delete(mine.id)
    assert client(stored).chat.completions.retrieve(mine.id).id == mine.id


def test_without_store_nothing_is_kept_and_metadata_alone_is_refused(stored):
    plain = ask(stored, "Unstored.")
    with pytest.raises(openai.NotFoundError):
        client(stored).chat.completions.retrieve(plain.id)
    with pytest.raises(openai.BadRequestError, match="set 'store': true"):
        ask(stored, "Tagged.", metadata={"a": "b"})


def test_store_is_read_as_the_request_schema_reads_it(stored):
    kept = ask(stored, "Kept.", extra_body={"store": "true"})  # what the schema takes as true, the store keeps
    assert client(stored).chat.completions.retrieve(kept.id).id == kept.id
    unary = ask(stored, "Unary.", store=True, extra_body={"stream": "false"})  # answered and kept as unary
    assert client(stored).chat.completions.retrieve(unary.id).choices[0].message.content == \
        unary.choices[0].message.content
    response = httpx.post(f"{stored.base_url}/v3/chat/completions", headers={"authorization": f"Bearer {KEYS[0]}"},
                          json={"model": MODEL_NAME, "messages": [{"role": "user", "content": "x"}], "store": "maybe"})
    assert_openai_error(response, 400, "store")


@pytest.mark.parametrize(("path", "param"), [("?limit=0", "limit"), ("?limit=x", "limit"), ("?order=up", "order"),
                                             ("?after=chatcmpl-nope", "completion_id")])
def test_bad_listing_parameters_are_refused_by_name(stored, path, param):
    response = httpx.get(f"{stored.base_url}/v3/chat/completions{path}",
                         headers={"authorization": f"Bearer {KEYS[0]}"})
    assert_openai_error(response, 404 if param == "completion_id" else 400, param)


def test_a_metadata_filter_takes_any_key_and_at_most_sixteen(stored):
    headers = {"authorization": f"Bearer {KEYS[0]}"}
    quoted = httpx.get(f"{stored.base_url}/v3/chat/completions", params={'metadata[a"b]': "v"}, headers=headers)
    assert quoted.status_code == 200 and quoted.json()["data"] == []  # a quote in a key was a 500 (JSON path)
    many = {f"metadata[k{i}]": "v" for i in range(17)}  # 1,000 of them were a 500 (expression tree too large)
    assert_openai_error(httpx.get(f"{stored.base_url}/v3/chat/completions", params=many, headers=headers), 400,
                        "metadata")


@pytest.mark.parametrize("metadata", [{f"k{i}": "v" for i in range(17)}, {"k" * 65: "v"}, {"k": "v" * 513}])
def test_metadata_beyond_openai_s_limits_is_refused_on_create_and_on_update(stored, metadata):
    headers = {"authorization": f"Bearer {KEYS[0]}"}
    body = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "x"}], "max_tokens": 2, "store": True}
    created = httpx.post(f"{stored.base_url}/v3/chat/completions", json={**body, "metadata": metadata},
                         headers=headers, timeout=60)
    assert assert_openai_error(created, 400)["param"].startswith("metadata")  # metadata, or metadata.KEY
    kept = ask(stored, "Kept.", store=True)
    updated = httpx.post(f"{stored.base_url}/v3/chat/completions/{kept.id}", json={"metadata": metadata},
                         headers=headers)
    assert assert_openai_error(updated, 400)["param"].startswith("metadata")


def test_an_update_that_is_not_utf8_is_refused(stored):
    kept = ask(stored, "Kept.", store=True)
    response = httpx.post(f"{stored.base_url}/v3/chat/completions/{kept.id}", content=b'{"metadata": {"a": "\xff"}}',
                          headers={"authorization": f"Bearer {KEYS[0]}", "content-type": "application/json"})
    assert_openai_error(response, 400, words="not valid JSON")


def test_the_store_outlives_a_restart(stored, default_model, store_path, tmp_path):
    kept = ask(stored, "Remember me.", store=True).id
    restarted = serve(default_model, store_path, tmp_path)
    try:
        assert client(restarted).chat.completions.retrieve(kept).id == kept
    finally:
        restarted.stop()


def test_with_the_store_off_store_true_is_refused(default_model, tmp_path):
    server = start_server(["--model", str(default_model), "--model-name", MODEL_NAME, "--store-path", "none"],
                          tmp_path)
    try:
        with pytest.raises(openai.BadRequestError, match="keeps no completions"):
            client(server).chat.completions.create(model=MODEL_NAME, max_tokens=4, store=True,
                                                   messages=[{"role": "user", "content": "hi"}])
        assert_openai_error(httpx.get(f"{server.base_url}/v3/chat/completions"), 404, None, "keeps no completions")
    finally:
        server.stop()
