"""Hot reload on the real server: config.json and graph edits while a long stream is in flight.

Each test starts a stream long enough for this machine (from its measured decoding speed: ``ENGINE_LOAD_S``
of tokens where a reload loads an engine, ``QUICK_S`` where it does not), changes the files, waits for
``/v1/config`` to show the change, and checks that the stream was still running then and completes whole.
"""

import json
import re
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, start_server

pytestmark = pytest.mark.slow

#: Seconds of decoding a stream lasts (alone) where the reload loads an engine, and where it does not.
ENGINE_LOAD_S = 18.0
QUICK_S = 6.0
POLL = "0.2"


class StreamInFlight:
    """A long streamed chat, read in a thread while the test changes the server's files."""

    def __init__(self, base_url: str, model: str, tokens: int) -> None:
        self.tokens = tokens
        self.chunks: list[float] = []
        self.finish_reason: str | None = None
        self.completion_tokens = 0
        self.error: BaseException | None = None
        self.started = threading.Event()
        body = {"model": model, "messages": [{"role": "user", "content": "Tell me a long story."}],
                "max_tokens": tokens, "stream": True, "stream_options": {"include_usage": True},
                "ignore_eos": True, "temperature": 0}
        self.thread = threading.Thread(target=self._read, args=(f"{base_url}/v3/chat/completions", body))
        self.thread.start()
        assert self.started.wait(60), f"no first chunk: {self.error}"

    def _read(self, url: str, body: dict) -> None:
        try:
            with httpx.stream("POST", url, json=body, timeout=120) as response:
                assert response.status_code == 200, response.read()
                for line in response.iter_lines():
                    if not line.startswith("data: {"):
                        continue
                    chunk = json.loads(line[6:])
                    self.chunks.append(time.monotonic())
                    self.started.set()
                    for choice in chunk.get("choices", []):
                        self.finish_reason = choice.get("finish_reason") or self.finish_reason
                    if chunk.get("usage"):
                        self.completion_tokens = chunk["usage"]["completion_tokens"]
        except BaseException as error:  # reported by finish()
            self.error = error
            self.started.set()

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def finish(self) -> None:
        """Wait for the end; the stream must have completed whole."""
        self.thread.join(120)
        assert self.error is None, f"the stream failed: {self.error!r}"
        assert (self.finish_reason, self.completion_tokens) == ("length", self.tokens)


class ReloadableServer:
    """``ovserve serve --config`` over a folder of graphs this test edits."""

    def __init__(self, root: Path, model: Path, tmp: Path) -> None:
        self.root = root
        self.model = model
        self.base = (REPO / "graphs" / "llm.pbtxt").read_text()
        self.write_graph("chat")
        self.write_config(["chat"])
        self.server = start_server(["--config", str(root / "config.json"), "--file_system_poll_wait_seconds", POLL],
                                   tmp)
        self.tokens_per_second = self.decoding_speed()

    def decoding_speed(self) -> float:
        """Tokens a second one stream decodes here (CPUs differ severalfold)."""
        body = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 96, "ignore_eos": True}
        httpx.post(f"{self.url}/v3/chat/completions", json={**body, "max_tokens": 8}, timeout=60)  # warm
        started = time.monotonic()
        httpx.post(f"{self.url}/v3/chat/completions", json=body, timeout=60).raise_for_status()
        return 96 / (time.monotonic() - started)

    def stream(self, model: str, seconds: float) -> StreamInFlight:
        """A stream of about ``seconds`` of decoding on this machine (within the model's context)."""
        return StreamInFlight(self.url, model, max(200, min(6000, int(self.tokens_per_second * seconds))))

    @property
    def url(self) -> str:
        return self.server.base_url

    def write_graph(self, name: str, graph: str | None = None, model: Path | None = None, **engine: object) -> Path:
        """The LLM graph for ``name``, its engine on ``model`` (the test model), with ``engine`` options added."""
        graph = graph or self.base
        options = f'models_path: "{model or self.model}"\n      cache_size: 1\n' + "".join(
            f"      {key}: {json.dumps(value)}\n" for key, value in engine.items())
        graph = re.sub(r'models_path: "smollm2".*\n', options, graph)
        path = self.root / name / "graph.pbtxt"
        path.parent.mkdir(exist_ok=True)
        staged = path.with_suffix(".tmp")
        staged.write_text(graph)
        staged.replace(path)  # at once, as editors save: the watcher never reads half a graph
        return path

    def write_config(self, names: list[str]) -> None:
        (self.root / "config.json").write_text(json.dumps({
            "model_config_list": [], "mediapipe_config_list": [{"name": name} for name in names]}))

    def status(self) -> dict[str, dict[int, dict]]:
        """``/v1/config``: model → version → its status entry."""
        config = httpx.get(f"{self.url}/v1/config", timeout=10).json()
        return {name: {int(v["version"]): v for v in entry["model_version_status"]} for name, entry in config.items()}

    def wait_for(self, what: str, condition, timeout: float = 90) -> dict[str, dict[int, dict]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if condition(status):
                return status
            time.sleep(0.1)
        raise AssertionError(f"{what}: not seen within {timeout}s; /v1/config: {self.status()}\n"
                             f"{self.server.output()}")

    def serving(self, name: str) -> int:
        """The version of ``name`` that is AVAILABLE."""
        return next(v for v, entry in self.status()[name].items() if entry["state"] == "AVAILABLE")

    def settled(self, names: list[str]) -> None:
        """Apply the files now (``POST /v1/config/reload``), then wait until exactly ``names`` are served, and no
        version is still loading or unloading."""
        forced = httpx.post(f"{self.url}/v1/config/reload", timeout=120)
        assert forced.status_code in (200, 201), forced.text

        def done(status: dict) -> bool:
            serving = {n for n, versions in status.items() if any(v["state"] == "AVAILABLE" for v in versions.values())}
            busy = any(v["state"] == "UNLOADING" or (v["state"] == "LOADING" and v["status"]["error_code"] == "OK")
                       for versions in status.values() for v in versions.values())
            return serving == set(names) and not busy
        self.wait_for(f"serving {names}", done)

    def chat(self, model: str) -> httpx.Response:
        return httpx.post(f"{self.url}/v3/chat/completions", timeout=60, json={
            "model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})


@pytest.fixture(scope="module")
def reloadable(default_model, tmp_path_factory):
    server = ReloadableServer(tmp_path_factory.mktemp("reload"), default_model, tmp_path_factory.mktemp("log"))
    yield server
    server.server.stop()


@pytest.fixture
def base(reloadable):
    """Each test starts from one model, 'chat', on the plain graph."""
    reloadable.write_graph("chat")
    reloadable.write_config(["chat"])
    reloadable.settled(["chat"])
    return reloadable


def test_a_model_added_while_a_stream_runs_is_served_and_the_stream_completes(base):
    stream = base.stream("chat", ENGINE_LOAD_S)
    base.write_graph("added")
    base.write_config(["chat", "added"])
    base.wait_for("'added' AVAILABLE", lambda s: s.get("added", {}).get(1, {}).get("state") == "AVAILABLE")
    assert stream.running, "the stream ended before the new model was loaded: make it longer"
    assert base.chat("added").status_code == 200
    stream.finish()
    assert base.serving("chat") == 1, "adding a model leaves the others as they are"


def test_a_graph_edit_of_other_nodes_swaps_the_graph_and_keeps_the_engine(base):
    engines = set(base.server.engine_pids())
    before = base.serving("chat")
    stream = base.stream("chat", QUICK_S)
    edited = base.base.replace('name: "detokenize"', 'name: "detokenize_text"')
    base.write_graph("chat", edited)
    status = base.wait_for("the edited graph", lambda s: s["chat"].get(before + 1, {}).get("state") == "AVAILABLE")
    assert status["chat"][before]["state"] == "UNLOADING", "the old version waits for its stream"
    assert stream.running
    assert base.chat("chat").status_code == 200, "new requests go to the new version meanwhile"
    stream.finish()
    base.wait_for("the old version unloaded", lambda s: s["chat"][before]["state"] == "END")
    assert set(base.server.engine_pids()) == engines, "the engine (and its weights) was kept"
    assert any("reuses engine" in line for line in base.server.lines)


def test_an_engine_setting_edit_starts_a_new_engine_and_stops_the_old_after_the_stream(base):
    (old_engine,) = base.server.engine_pids()
    before = base.serving("chat")
    stream = base.stream("chat", ENGINE_LOAD_S)
    base.write_graph("chat", max_num_seqs=32)
    base.wait_for("the new engine", lambda s: s["chat"].get(before + 1, {}).get("state") == "AVAILABLE")
    assert stream.running
    assert old_engine in base.server.engine_pids(), "the old engine serves the stream to its end"
    stream.finish()
    base.wait_for("the old version unloaded", lambda s: s["chat"][before]["state"] == "END")
    deadline = time.monotonic() + 30
    while old_engine in base.server.engine_pids() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert old_engine not in base.server.engine_pids(), "the old engine process exited"
    assert len(base.server.engine_pids()) == 1


def test_a_broken_edit_keeps_the_old_version_serving_and_says_where(base):
    before = base.serving("chat")
    failures = _failures(base, "chat")
    stream = base.stream("chat", QUICK_S)
    broken = base.base.replace('calculator: "DetokenizerCalculator"', 'calculator: "DetokenizerCalculater"')
    path = base.write_graph("chat", broken)
    status = base.wait_for("the failed reload", lambda s: s["chat"].get(before + 1, {}).get("state") == "LOADING")
    error = status["chat"][before + 1]["status"]["error_message"]
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if "DetokenizerCalculater" in text)
    assert f"{path}:{line}:" in error and "Did you mean 'DetokenizerCalculator'" in error
    assert status["chat"][before]["state"] == "AVAILABLE"
    assert _failures(base, "chat") == failures + 1
    assert any(f"{path}:{line}:" in log_line and "ERROR" in log_line for log_line in base.server.lines)
    assert base.chat("chat").status_code == 200
    stream.finish()

    base.write_graph("chat")  # undone: the files say what serves again, and the failure is cleared
    status = base.wait_for("the undone edit", lambda s: all(v["state"] != "LOADING" for v in s["chat"].values()))
    assert status["chat"][before]["state"] == "AVAILABLE" and max(status["chat"]) == before


@pytest.mark.parametrize("name", ["gguf_cut_5mb", "gguf_garbage_metadata", "ir_garbage_xml", "ir_wrong_tokenizer"])
def test_an_edit_to_a_broken_model_file_keeps_the_old_version_serving_and_its_stream(base, broken_models, name):
    """A model file that crashed the server's native code (a cut .gguf: a segfault in the tokenizer) fails its new
    version with a message naming it, while the old version serves on and its stream completes."""
    before = base.serving("chat")
    failures = _failures(base, "chat")
    stream = base.stream("chat", QUICK_S)
    base.write_graph("chat", model=broken_models[name])
    status = base.wait_for("the failed reload", lambda s: s["chat"].get(before + 1, {}).get("state") == "LOADING"
                           and s["chat"][before + 1]["status"]["error_code"] != "OK")
    assert str(broken_models[name]) in status["chat"][before + 1]["status"]["error_message"]
    assert status["chat"][before]["state"] == "AVAILABLE" and _failures(base, "chat") == failures + 1
    assert base.chat("chat").status_code == 200
    stream.finish()

    base.write_graph("chat")
    status = base.wait_for("the undone edit", lambda s: all(v["state"] != "LOADING" for v in s["chat"].values()))
    assert status["chat"][before]["state"] == "AVAILABLE"


def test_a_broken_config_json_changes_nothing_and_a_forced_reload_names_the_line(base):
    failures = _failures(base, "-")
    (base.root / "config.json").write_text('{"mediapipe_config_list": [\n  {"name": "chat",}\n]}')
    deadline = time.monotonic() + 30
    while _failures(base, "-") == failures and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _failures(base, "-") == failures + 1
    forced = httpx.post(f"{base.url}/v1/config/reload", timeout=30)
    assert forced.status_code == 500
    assert f"{base.root / 'config.json'}:2:" in forced.json()["error"]["message"]
    assert base.chat("chat").status_code == 200
    base.write_config(["chat"])
    base.settled(["chat"])
    unchanged = httpx.post(f"{base.url}/v1/config/reload", timeout=30)
    assert unchanged.status_code == 200 and "chat" in unchanged.json()


def test_a_new_entry_that_fails_is_reported_until_it_is_removed(base):
    broken = base.base.replace('calculator: "TokenizerCalculator"', 'calculator: "TokenizerCalculatorr"')
    base.write_graph("ghost", broken)
    base.write_config(["chat", "ghost"])
    status = base.wait_for("the failed entry", lambda s: any(
        v["status"]["error_code"] != "OK" for v in s.get("ghost", {}).values()))
    (entry,) = status["ghost"].values()
    assert entry["state"] == "LOADING" and "TokenizerCalculatorr" in entry["status"]["error_message"]
    assert base.chat("ghost").status_code == 404
    base.write_config(["chat"])
    base.wait_for("the entry forgotten", lambda s: "ghost" not in s)


def test_a_removed_model_finishes_its_stream_then_unloads(base):
    base.write_graph("leaving")
    base.write_config(["chat", "leaving"])
    base.settled(["chat", "leaving"])
    engines = set(base.server.engine_pids())
    stream = base.stream("leaving", QUICK_S)
    base.write_config(["chat"])
    status = base.wait_for("'leaving' unloading", lambda s: s["leaving"][1]["state"] == "UNLOADING")
    assert "chat" in status
    refused = base.chat("leaving")
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "model_not_found"
    assert stream.running
    stream.finish()
    base.wait_for("'leaving' ended", lambda s: s["leaving"][1]["state"] == "END")
    deadline = time.monotonic() + 30
    while len(base.server.engine_pids()) == len(engines) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(base.server.engine_pids()) == len(engines) - 1, "the removed model's engine exited"


def _failures(base: ReloadableServer, model: str) -> float:
    text = httpx.get(f"{base.url}/metrics", timeout=10).text
    match = re.search(rf'^ovserve_config_reload_failures_total{{model="{re.escape(model)}"}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def test_a_server_without_config_has_nothing_to_reload(server):
    response = httpx.post(f"{server.base_url}/v1/config/reload", timeout=10)
    assert response.status_code == 400 and response.json()["error"]["code"] == "no_config"
