"""The model store as a user drives it: where it lives, ``ovserve pull`` (a local file, a Hugging Face id),
``ovserve list``, ``ovserve rm``, and serving a model by its name in the store (OVMS's --source_model too)."""

import os
import subprocess
import sys
from pathlib import Path

import httpx
import platformdirs
import pytest

from ovserve.engine.scoring_model import scoring_model_path
from ovserve.engine.settings import find_model_files
from ovserve.store.fetch import default_models_dir
from tests.conftest import REPO, start_server
from tests.fake_hub import fake_hub


def ovserve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ovserve.cli", *args], capture_output=True, text=True, check=False,
                          cwd=REPO, env={**os.environ, **(env or {})}, timeout=300)


def test_the_store_is_in_the_users_data_folder_unless_ovserve_home_or_models_dir_say(monkeypatch, tmp_path):
    monkeypatch.delenv("OVSERVE_MODELS_DIR", raising=False)
    monkeypatch.delenv("OVSERVE_HOME", raising=False)
    assert default_models_dir() == platformdirs.user_data_path("ovserve") / "models"
    monkeypatch.setenv("OVSERVE_HOME", str(tmp_path / "home"))
    assert default_models_dir() == tmp_path / "home" / "models"
    monkeypatch.setenv("OVSERVE_MODELS_DIR", str(tmp_path / "elsewhere"))
    assert default_models_dir() == tmp_path / "elsewhere"


def test_pull_a_local_gguf_then_list_and_remove_it(default_model, tmp_path):
    store = tmp_path / "store"
    pulled = ovserve("pull", str(default_model), "--name", "mine", "--models-dir", str(store))
    assert pulled.returncode == 0, pulled.stderr
    assert Path(pulled.stdout.strip()) == store / "mine"
    assert (store / "mine" / default_model.name).stat().st_size == default_model.stat().st_size

    listed = ovserve("list", "--models-dir", str(store))
    assert listed.returncode == 0
    header, row = listed.stdout.splitlines()
    assert header.split() == ["NAME", "FORMAT", "SIZE", "PATH"]
    assert row.split()[:2] == ["mine", "gguf"] and row.split()[-1] == str(store / "mine")

    again = ovserve("pull", str(default_model), "--name", "mine", "--models-dir", str(store))
    assert again.returncode == 1 and "already has a model 'mine'" in again.stderr

    assert ovserve("rm", "mine", "--models-dir", str(store)).returncode == 0
    assert not (store / "mine").exists()
    missing = ovserve("rm", "mine", "--models-dir", str(store))
    assert missing.returncode == 1 and "no model 'mine'" in missing.stderr
    assert "no models in" in ovserve("list", "--models-dir", str(store)).stderr


def test_a_reference_that_is_nothing_says_what_it_tried(tmp_path):
    result = ovserve("pull", "no-such-model", "--models-dir", str(tmp_path))
    assert result.returncode == 1
    assert "not a file or folder, nor a model in the store" in result.stderr and "smollm2" in result.stderr


@pytest.fixture
def hub(default_model, tmp_path):
    """A Hugging Face stand-in with a .gguf repository (two quantizations) and one without a model."""
    repos = {
        "someone/SmolLM2-GGUF": {"SmolLM2.Q4_1.gguf": default_model, "SmolLM2.copy.gguf": default_model,
                                 "README.md": REPO / "README.md"},
        "someone/not-a-model": {"README.md": REPO / "README.md"},
    }
    with fake_hub(repos) as endpoint:
        yield {"HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf-home")}


def test_pull_by_hugging_face_id_takes_the_chosen_gguf_into_org_name(hub, tmp_path):
    store = str(tmp_path / "store")
    ambiguous = ovserve("pull", "someone/SmolLM2-GGUF", "--models-dir", store, env=hub)
    assert ambiguous.returncode == 1
    assert "choose one with --gguf-filename" in ambiguous.stderr and "SmolLM2.Q4_1.gguf" in ambiguous.stderr
    pulled = ovserve("pull", "someone/SmolLM2-GGUF", "--gguf_filename", "SmolLM2.Q4_1.gguf",
                     "--model_repository_path", store, env=hub)
    assert pulled.returncode == 0, pulled.stderr
    folder = Path(pulled.stdout.strip())
    assert folder == tmp_path / "store" / "someone" / "SmolLM2-GGUF"
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["SmolLM2.Q4_1.gguf"]
    assert ovserve("list", "--models-dir", store).stdout.splitlines()[1].split()[:2] == ["someone/SmolLM2-GGUF", "gguf"]

    nothing = ovserve("pull", "someone/not-a-model", "--models-dir", store, env=hub)
    assert nothing.returncode == 1 and "holds no OpenVINO IR" in nothing.stderr
    unknown = ovserve("pull", "someone/missing", "--models-dir", store, env=hub)
    assert unknown.returncode == 1 and "Hugging Face has no model 'someone/missing'" in unknown.stderr
    assert not list((tmp_path / "store" / "someone").glob(".*partial"))  # nothing half-written is left


@pytest.mark.slow
def test_ovms_source_model_pulls_then_serves_under_the_hugging_face_id(hub, tmp_path):
    store = str(tmp_path / "store")
    fetched = ovserve("serve", "--source_model", "someone/SmolLM2-GGUF", "--gguf_filename", "SmolLM2.Q4_1.gguf",
                      "--model_repository_path", store, "--pull", env=hub)
    assert fetched.returncode == 0, fetched.stderr
    assert Path(fetched.stdout.strip()) == tmp_path / "store" / "someone" / "SmolLM2-GGUF"
    # as 'ovserve pull' does, the IR the scoring pass uses is made now, not on the first top_logprobs request
    gguf = find_model_files(tmp_path / "store" / "someone" / "SmolLM2-GGUF")
    assert scoring_model_path(gguf, convert=False).is_file()

    server = start_server(["--source_model", "someone/SmolLM2-GGUF", "--model_repository_path", store], tmp_path)
    try:  # already in the store: served with no hub at all
        client = server.openai()
        assert [m.id for m in client.models.list().data] == ["someone/SmolLM2-GGUF"]
        answer = client.chat.completions.create(model="someone/SmolLM2-GGUF", max_tokens=5, temperature=0,
                                                messages=[{"role": "user", "content": "Say hi"}])
        assert answer.choices[0].message.content
    finally:
        server.stop()


@pytest.mark.slow
def test_a_graph_names_its_model_by_its_name_in_the_store(default_model, tmp_path):
    store = tmp_path / "store"
    assert ovserve("pull", str(default_model), "--name", "chat", "--models-dir", str(store)).returncode == 0
    graph = (REPO / "graphs" / "llm.pbtxt").read_text().replace('models_path: "smollm2"', 'models_path: "chat"')
    model_dir = tmp_path / "config" / "chat"
    model_dir.mkdir(parents=True)
    (model_dir / "graph.pbtxt").write_text(graph)
    (tmp_path / "config" / "config.json").write_text(
        '{"model_config_list": [], "mediapipe_config_list": [{"name": "chat", "base_path": "chat"}]}')
    server = start_server(["--config", str(tmp_path / "config" / "config.json")], tmp_path,
                          env={"OVSERVE_MODELS_DIR": str(store)})
    try:
        assert httpx.get(f"{server.base_url}/v2/health/ready").status_code == 200
        assert [m.id for m in server.openai().models.list().data] == ["chat"]
    finally:
        server.stop()


@pytest.mark.parametrize("name", ["../escaped", "/tmp/absolute", "a/b/c", ".hidden"])
def test_a_name_that_would_leave_or_hide_in_the_store_is_refused(default_model, tmp_path, name):
    store = tmp_path / "store"
    result = ovserve("pull", str(default_model), "--name", name, "--models-dir", str(store))
    assert result.returncode == 1 and "cannot name a model in the store" in result.stderr
    assert not (tmp_path / "escaped").exists() and not any(store.rglob("*.gguf"))


def test_a_pull_that_fails_after_copying_leaves_nothing_behind(tmp_path):
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf at all" * 100)
    store = tmp_path / "store"
    result = ovserve("pull", str(bogus), "--name", "bad", "--models-dir", str(store))
    assert result.returncode == 1 and "error:" in result.stderr
    assert not (store / "bad").exists()
    assert ovserve("pull", str(bogus), "--name", "bad", "--models-dir", str(store)).returncode == 1  # not "already"


def test_a_speecht5_ir_repository_is_pulled_as_it_is_for_text2speech(tmp_path):
    """A SpeechT5 IR needs its tokenizer but no detokenizer (GenAI reads the text, never writes any)."""
    from tests.tiny_models import SPEECHT5

    files = {path.name: path for path in SPEECHT5.iterdir() if not path.name.startswith("openvino_detokenizer")}
    untokenized = {name: path for name, path in files.items() if not name.startswith("openvino_tokenizer")}
    with fake_hub({"someone/speecht5-ov": files, "someone/speecht5-untokenized": untokenized}) as endpoint:
        env = {"HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf-home")}
        store = str(tmp_path / "store")
        pulled = ovserve("pull", "someone/speecht5-ov", "--task", "text2speech", "--models-dir", store, env=env)
        assert pulled.returncode == 0, pulled.stderr
        folder = Path(pulled.stdout.strip())
        assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == sorted(files)
        refused = ovserve("pull", "someone/speecht5-untokenized", "--models-dir", store, env=env)
        assert refused.returncode == 1 and "has an OpenVINO IR but no openvino_tokenizer.xml" in refused.stderr


def test_an_image_generation_ir_repository_is_pulled_whole_and_served_for_image_generation(tmp_path):
    """A diffusion pipeline's IR (OpenVINO/stable-diffusion-*) has its models in folders, and no openvino_model.xml
    at its root: it is downloaded as it is, and its model_index.json says its task."""
    from ovserve.store.catalog import model_task
    from tests.tiny_models import SD

    files = {str(path.relative_to(SD)): path for path in SD.rglob("*") if path.is_file()}
    with fake_hub({"someone/tiny-sd-ov": files}) as endpoint:
        env = {"HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf-home")}
        pulled = ovserve("pull", "someone/tiny-sd-ov", "--models-dir", str(tmp_path / "store"), env=env)
        assert pulled.returncode == 0, pulled.stderr
        folder = Path(pulled.stdout.strip())
        assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == sorted(files)
        assert model_task(folder) == "image_generation"
