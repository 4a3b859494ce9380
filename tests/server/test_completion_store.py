"""The store of chat completions on its own: bounds, owners, pages, and streams added up."""

import json
import time

from ovserve.server.completion_store import CompletionStore, owner_of


def completion(n: int, created: int | None = None, model: str = "m") -> dict:
    return {"id": f"chatcmpl-{n}", "object": "chat.completion", "created": created or int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": f"answer {n}"},
                         "finish_reason": "stop"}]}


def test_the_oldest_beyond_max_items_and_those_past_max_age_are_dropped(tmp_path):
    store = CompletionStore(tmp_path / "s.sqlite3", max_items=2, max_age=3600)
    store.put("", completion(1, created=int(time.time()) - 7200), [], None)  # already too old
    for n in (2, 3, 4):
        store.put("", completion(n), [], None)
    assert [c["id"] for c in store.list("").items] == ["chatcmpl-3", "chatcmpl-4"]


def test_pages_go_either_way_from_a_cursor_and_filter_by_model_and_metadata(tmp_path):
    store = CompletionStore(tmp_path / "s.sqlite3")
    for n in range(5):
        store.put("", completion(n, model="a" if n % 2 else "b"), [], {"n": str(n), "even": str(n % 2 == 0)})
    first = store.list("", limit=2)
    assert [c["id"] for c in first.items] == ["chatcmpl-0", "chatcmpl-1"] and first.has_more
    rest = store.list("", after="chatcmpl-1", limit=10)
    assert [c["id"] for c in rest.items] == ["chatcmpl-2", "chatcmpl-3", "chatcmpl-4"] and not rest.has_more
    assert [c["id"] for c in store.list("", order="desc", limit=2).items] == ["chatcmpl-4", "chatcmpl-3"]
    assert [c["id"] for c in store.list("", model="a").items] == ["chatcmpl-1", "chatcmpl-3"]
    assert [c["id"] for c in store.list("", metadata={"even": "True", "n": "2"}).items] == ["chatcmpl-2"]


def test_an_owner_sees_and_changes_only_its_own_and_the_file_outlives_the_store(tmp_path):
    mine, theirs = owner_of("key-1"), owner_of("key-2")
    assert mine != theirs and "key-1" not in mine
    store = CompletionStore(tmp_path / "s.sqlite3")
    store.put(mine, completion(1), [{"role": "user", "content": "hi", "id": "chatcmpl-1-0"}], {"k": "v"})
    assert store.get(theirs, "chatcmpl-1") is None and store.list(theirs).items == []
    assert store.update_metadata(theirs, "chatcmpl-1", {}) is None and not store.delete(theirs, "chatcmpl-1")
    store.close()
    reopened = CompletionStore(tmp_path / "s.sqlite3")
    assert reopened.get(mine, "chatcmpl-1")["metadata"] == {"k": "v"}
    assert reopened.messages(mine, "chatcmpl-1")[0]["content"] == "hi"
    assert reopened.delete(mine, "chatcmpl-1") and reopened.get(mine, "chatcmpl-1") is None


def test_a_key_s_writes_never_evict_another_key_s_items_and_all_keys_together_are_bounded(tmp_path):
    alice, bob, carol = owner_of("alice"), owner_of("bob"), owner_of("carol")
    store = CompletionStore(tmp_path / "s.sqlite3", max_items=3, max_total=5)
    store.put(alice, completion(1), [], None)
    for n in (2, 3, 4, 5):
        store.put(bob, completion(n), [], None)
    assert [c["id"] for c in store.list(alice).items] == ["chatcmpl-1"]  # bob's writes left it
    assert [c["id"] for c in store.list(bob).items] == ["chatcmpl-3", "chatcmpl-4", "chatcmpl-5"]
    for n in (6, 7):
        store.put(carol, completion(n), [], None)
    # six kept by the keys' own bounds, five of all: the oldest of all goes, whoever stored it
    assert store.list(alice).items == [] and len(store.list(bob).items) == 3 and len(store.list(carol).items) == 2


def test_metadata_filters_take_any_key_as_a_value(tmp_path):
    store = CompletionStore(tmp_path / "s.sqlite3")
    store.put("", completion(1), [], {'a"b': "x", "$.c": "y"})
    store.put("", completion(2), [], {"a": "x"})
    assert [c["id"] for c in store.list("", metadata={'a"b': "x"}).items] == ["chatcmpl-1"]
    assert [c["id"] for c in store.list("", metadata={"$.c": "y"}).items] == ["chatcmpl-1"]
    assert store.list("", metadata={'a"b': "y"}).items == []


def response(n: int, text: str) -> dict:
    return {"id": f"resp_{n}", "object": "response", "created_at": int(time.time()), "output": [
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}]}


def test_a_chain_of_responses_takes_room_in_proportion_to_its_length(tmp_path):
    store = CompletionStore(tmp_path / "s.sqlite3", max_items=100)
    previous = None
    for n in range(50):
        store.put_response("", response(n, f"answer {n}"), [{"role": "user", "content": f"question {n}"}], previous)
        previous = f"resp_{n}"
    sizes = [len(row[0]) + len(row[1]) for row in store._db.execute(
        "select input_items, conversation from responses order by seq")]
    assert max(sizes) - min(sizes) <= 1  # each row holds its own turn only ("question 9" vs "question 10")
    chain = store.chain("", "resp_49")
    assert [r["id"] for r, _ in chain] == [f"resp_{n}" for n in range(50)]
    assert [items[0]["content"] for _, items in chain[:2]] == ["question 0", "question 1"]
    store.delete_response("", "resp_10")  # its beginning gone: the chain starts after it
    assert store.chain("", "resp_49")[0][0]["id"] == "resp_11"
    assert store.chain("", "resp_10") is None and store.chain("someone else", "resp_49") is None


def test_a_response_kept_by_an_earlier_version_continues_without_repeating_its_input(tmp_path):
    store = CompletionStore(tmp_path / "s.sqlite3")
    whole = [{"role": "user", "content": "question 0"}, {"role": "assistant", "content": "answer 0"},
             {"role": "user", "content": "question 1"}]
    store._db.execute(  # as files written before chains were links hold it: the whole input, previous_id null
        "insert into responses (id, owner, created, response, input_items, conversation) values (?, ?, ?, ?, ?, ?)",
        ("resp_old", "", int(time.time()), json.dumps(response(1, "answer 1")), json.dumps(whole[2:]),
         json.dumps(whole)))
    store.put_response("", response(2, "answer 2"), [{"role": "user", "content": "question 2"}], "resp_old")
    chain = store.chain("", "resp_2")
    assert [item["content"] for _, items in chain for item in items] == [
        "question 0", "answer 0", "question 1", "question 2"]


async def test_the_store_works_on_its_own_thread_in_the_order_asked(tmp_path):
    import threading

    store = CompletionStore(tmp_path / "s.sqlite3")
    try:
        written = store.run(store.put, "", completion(1), [], None)
        read = store.run(store.get, "", "chatcmpl-1")  # asked after the write, before it ran: it sees it
        thread = await store.run(lambda: threading.current_thread().name)
        await written
        assert (await read)["id"] == "chatcmpl-1"
        assert thread.startswith("ovserve-store") and thread != threading.current_thread().name
    finally:
        store.close()
