"""The command line: graph check / show and the calculator list, as a user runs them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ovserve.cli import main

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "graphs"


def test_every_shipped_graph_passes_check(capsys):
    graphs = sorted(str(p) for p in (REPO / "graphs").glob("*.pbtxt"))
    assert graphs
    assert main(["graph", "check", *graphs]) == 0
    assert capsys.readouterr().out.count("ok ") == len(graphs)


def test_a_broken_graph_fails_check_with_file_line_and_node(tmp_path, capsys):
    broken = tmp_path / "broken.pbtxt"
    broken.write_text('input_stream: "TEXT:t"\nnode {\n  name: "r"\n  calculator: "RedactCalculatr"\n}\n')
    assert main(["graph", "check", str(broken)]) == 1
    err = capsys.readouterr().err
    assert f"{broken}:4:3: node 'r': unknown calculator 'RedactCalculatr'. Did you mean 'RedactCalculator'?" in err


def test_graph_show_prints_mermaid_and_dot(capsys):
    assert main(["graph", "show", str(REPO / "graphs" / "redact_example.pbtxt")]) == 0
    mermaid = capsys.readouterr().out
    assert mermaid.startswith("flowchart LR") and "redact<br/>RedactCalculator" in mermaid
    assert main(["graph", "show", "--format", "dot", str(REPO / "graphs" / "redact_example.pbtxt")]) == 0
    dot = capsys.readouterr().out
    assert dot.startswith("digraph") and 'label="redact\\nRedactCalculator"' in dot


def test_graph_show_says_what_runs_where(capsys):
    assert main(["graph", "show", str(REPO / "graphs" / "llm.pbtxt")]) == 0
    mermaid = capsys.readouterr().out
    assert "engine<br/>LLMEngine<br/>(engine processes" in mermaid  # the model runs outside the server's process
    assert "tokenize<br/>TokenizerCalculator<br/>(thread pool 'default')" in mermaid
    assert '"detokenize<br/>DetokenizerCalculator"]' in mermaid  # plain: on the server's event loop
    assert main(["graph", "show", "--format", "dot", str(REPO / "graphs" / "speech2text.pbtxt")]) == 0
    assert "(engine process)" in capsys.readouterr().out


def test_calculators_lists_ports_and_options(capsys):
    assert main(["calculators"]) == 0
    out = capsys.readouterr().out
    assert "RedactCalculator  [calculator, built-in" in out
    assert "input TEXT: str - text to clean" in out
    assert "words: list[str] (required)" in out


def test_user_calculators_folder_is_loaded(tmp_path, capsys):
    (tmp_path / "mine.py").write_text(
        "from ovserve import Calculator, Input\n\nclass MyCalc(Calculator):\n    X = Input(int)\n"
        "    def process(self, ctx):\n        pass\n"
    )
    graph = tmp_path / "g.pbtxt"
    graph.write_text('input_stream: "X:x"\nnode { calculator: "MyCalc" input_stream: "X:x" }\n')
    assert main(["graph", "check", "--calculators", str(tmp_path), str(graph)]) == 0
    assert main(["graph", "check", str(graph)]) == 1


def test_a_newcomers_unknown_calculator_points_at_the_calculators_flag_only(tmp_path, capsys):
    graph = tmp_path / "g.pbtxt"
    graph.write_text('input_stream: "IN:text"\noutput_stream: "OUT:upper"\n'
                     'node {\n  name: "up"\n  calculator: "UpperCalculator"\n'
                     '  input_stream: "IN:text"\n  output_stream: "OUT:upper"\n}\n')
    assert main(["graph", "check", str(graph)]) == 1
    problems = [line.strip() for line in capsys.readouterr().err.splitlines()[1:]]
    (problem,) = problems  # no follow-on "produced by no node" for the unknown node's output
    assert problem.startswith(f"{graph}:5:3: node 'up': unknown calculator 'UpperCalculator'.")
    assert "--calculators DIR" in problem and "Did you mean" not in problem  # not 'LLMCalculator'


def test_check_warns_of_a_graph_input_nothing_reads_and_counts_in_the_singular(tmp_path, capsys):
    graph = tmp_path / "g.pbtxt"
    graph.write_text('input_stream: "TEXT:text"\ninput_stream: "EXTRA:extra"\noutput_stream: "CLEAN:clean"\n'
                     'node { calculator: "RedactCalculator" input_stream: "TEXT:text" output_stream: "REDACTED:clean" '
                     'node_options { [type.googleapis.com/ovserve.RedactOptions] { words: ["x"] } } }\n')
    assert main(["graph", "check", str(graph)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == f"ok   {graph}: 1 node, 0 resources"
    assert f"warning: {graph}:2:1: graph input_stream 'EXTRA:extra' is read by no node" in captured.err


@pytest.mark.parametrize("argv", [["graph", "check", "--help"], ["calculators", "--help"]])
def test_the_installed_command_runs(argv):
    result = subprocess.run([sys.executable, "-m", "ovserve.cli", *argv], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "usage: ovserve" in result.stdout


def test_version_and_serve_help_show_defaults(capsys):
    from ovserve import __version__

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"ovserve {__version__}"
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for shown in ("(default: 127.0.0.1)", "(default: 8000)", "(default: info)", "(default 256)", "MODEL"):
        assert shown in help_text


def test_a_model_as_the_positional_argument_is_served_like_model(tmp_path):
    from ovserve.cli import build_parser
    from ovserve.server.serve_models import servable_specs

    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF")
    ((spec,), _) = servable_specs(build_parser().parse_args(["serve", str(model)]))
    assert spec.name == "tiny" and spec.overrides["engine"]["models_path"] == str(model.resolve())
    with pytest.raises(SystemExit):  # both ways at once is refused by the parser
        build_parser().parse_args(["serve", "--config", "c.json", str(model)])


def test_pull_from_an_unreachable_hub_fails_at_once_in_one_line_naming_the_way_out(tmp_path):
    closed = "http://127.0.0.1:9"  # nothing listens on the discard port
    result = subprocess.run([sys.executable, "-m", "ovserve.cli", "pull", "some/other-model", "--models-dir",
                             str(tmp_path)], capture_output=True, text=True, check=False, timeout=300,
                            env={**os.environ, "HF_ENDPOINT": closed, "HF_HUB_ETAG_TIMEOUT": "1"})
    assert result.returncode == 1
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "cannot reach 127.0.0.1:9" in error and "HF_ENDPOINT" in error
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1  # no retries logged


@pytest.mark.parametrize(("host", "url"), [("0.0.0.0", "http://127.0.0.1:8000"), ("::", "http://[::1]:8000"),
                                           ("10.1.2.3", "http://10.1.2.3:8000"), ("fe80::1", "http://[fe80::1]:8000")])
def test_the_ready_line_shows_an_address_clients_can_use(host, url):
    from ovserve.server.serve import client_url

    assert client_url(host, 8000) == url


def test_a_whisper_folder_is_served_for_speech2text_and_pull_task_checks_it(tmp_path, capsys):
    from ovserve.cli import build_parser
    from ovserve.server.serve_models import servable_specs
    from ovserve.store.catalog import list_models, model_kind, model_task
    from tests.tiny_models import RERANKER, WHISPER

    assert (model_task(WHISPER), model_kind(WHISPER)) == ("speech2text", "openvino_ir")
    ((spec,), _) = servable_specs(build_parser().parse_args(["serve", str(WHISPER), "--enable-word-timestamps"]))
    assert spec.graph_path.name == "speech2text.pbtxt"
    assert spec.overrides["whisper"] == {"models_path": str(WHISPER), "enable_word_timestamps": True}
    with pytest.raises(ValueError, match="--max-num-seqs set an LLM engine; the speech-to-text model"):
        servable_specs(build_parser().parse_args(["serve", str(WHISPER), "--max-num-seqs", "4"]))
    with pytest.raises(ValueError, match="--enable-word-timestamps is for speech-to-text models; 'reranker'"):
        servable_specs(build_parser().parse_args(["serve", str(RERANKER), "--enable-word-timestamps"]))
    store = tmp_path / "store"
    assert main(["pull", str(WHISPER), "--task", "speech2text", "--name", "tiny-whisper", "--models-dir",
                 str(store)]) == 0
    assert capsys.readouterr().out.strip() == str(store / "tiny-whisper")
    assert [(m.name, m.kind) for m in list_models(store)] == [("tiny-whisper", "openvino_ir")]
    assert main(["serve", "--pull", "--source_model", "tiny-whisper", "--task", "speech2text", "--models-dir",
                 str(store)]) == 0
    assert capsys.readouterr().out.strip() == str(store / "tiny-whisper")
    assert main(["pull", str(RERANKER), "--task", "speech2text", "--name", "no-whisper", "--models-dir",
                 str(store)]) == 1
    assert "is not a Whisper OpenVINO IR folder (missing openvino_encoder_model.xml" in capsys.readouterr().err
    assert [m.name for m in list_models(store)] == ["tiny-whisper"]  # what cannot be served is not kept


def test_a_speecht5_folder_is_served_for_text2speech_with_voices_and_pull_task_checks_it(tmp_path, capsys):
    from ovserve.cli import build_parser
    from ovserve.server.serve_models import servable_specs
    from ovserve.store.catalog import list_models, model_kind, model_task, speech_model_type
    from tests.tiny_models import RERANKER, SPEECHT5, SPEECHT5_SPEAKER, WHISPER

    assert (model_task(SPEECHT5), model_kind(SPEECHT5), speech_model_type(SPEECHT5)) == (
        "text2speech", "openvino_ir", "speecht5")
    assert speech_model_type(WHISPER) is None
    args = ["serve", str(SPEECHT5), "--voice", f"default={SPEECHT5_SPEAKER}", "--voice-alias", "alloy=default"]
    ((spec,), _) = servable_specs(build_parser().parse_args(args))
    assert spec.graph_path.name == "text2speech.pbtxt"
    assert spec.overrides["speech"] == {"models_path": str(SPEECHT5),
                                        "voices": [{"name": "default", "path": str(SPEECHT5_SPEAKER)}],
                                        "voice_aliases": [{"name": "alloy", "voice": "default"}]}
    with pytest.raises(ValueError, match="--max-num-seqs set an LLM engine; the text-to-speech model"):
        servable_specs(build_parser().parse_args(["serve", str(SPEECHT5), "--max-num-seqs", "4"]))
    with pytest.raises(ValueError, match="--voice and --voice-alias are for text-to-speech models; 'whisper'"):
        servable_specs(build_parser().parse_args(["serve", str(WHISPER), "--voice", "a=b.bin"]))
    with pytest.raises(ValueError, match="a --config's graphs list their own"):
        servable_specs(build_parser().parse_args(["serve", "--config", "config.json", "--voice", "a=b.bin"]))
    with pytest.raises(ValueError, match="--voice-alias takes NAME=VALUE"):
        servable_specs(build_parser().parse_args(["serve", str(SPEECHT5), "--voice-alias", "alloy"]))
    store = tmp_path / "store"
    assert main(["pull", str(SPEECHT5), "--task", "text2speech", "--name", "tiny-tts", "--models-dir",
                 str(store)]) == 0
    assert capsys.readouterr().out.strip() == str(store / "tiny-tts")
    assert main(["serve", "--pull", "--source_model", "tiny-tts", "--task", "text2speech", "--models-dir",
                 str(store)]) == 0
    assert capsys.readouterr().out.strip() == str(store / "tiny-tts")
    assert main(["pull", str(RERANKER), "--task", "text2speech", "--name", "no-tts", "--models-dir",
                 str(store)]) == 1
    assert "is not a text-to-speech OpenVINO IR folder (SpeechT5 exported with its vocoder: missing" in \
        capsys.readouterr().err
    assert [m.name for m in list_models(store)] == ["tiny-tts"]


def test_kokoro_folders_are_told_apart_and_speech_checkpoints_are_not_exported(tmp_path, capsys):
    import json

    from ovserve.store.catalog import model_kind, model_task, speech_model_type

    kokoro = tmp_path / "kokoro"
    kokoro.mkdir()
    (kokoro / "config.json").write_text(json.dumps({"vocab": {"a": 1}, "n_mels": 80}))
    (kokoro / "openvino_model.xml").write_text("<net/>")
    assert (model_task(kokoro), speech_model_type(kokoro)) == ("text2speech", "kokoro")
    checkpoint = tmp_path / "speecht5-checkpoint"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps({"architectures": ["SpeechT5ForTextToSpeech"]}))
    assert (model_task(checkpoint), model_kind(checkpoint), speech_model_type(checkpoint)) == (
        "text2speech", "checkpoint", None)
    assert main(["pull", str(checkpoint), "--models-dir", str(tmp_path / "store")]) == 1
    assert "is a text-to-speech checkpoint (PyTorch weights), which ovserve does not export" in capsys.readouterr().err


def test_an_image_generation_folder_is_served_for_image_generation_and_pull_task_checks_it(tmp_path, capsys):
    from ovserve.cli import build_parser
    from ovserve.server.serve_models import servable_specs
    from ovserve.store.catalog import list_models, model_kind, model_task
    from tests.tiny_models import RERANKER, SD

    assert (model_task(SD), model_kind(SD)) == ("image_generation", "openvino_ir")
    ((spec,), _) = servable_specs(build_parser().parse_args(["serve", str(SD), "--device", "CPU"]))
    assert spec.graph_path.name == "image_generation.pbtxt"
    assert spec.overrides["images"] == {"models_path": str(SD), "device": "CPU"}  # OVMS's option name: device
    with pytest.raises(ValueError, match="--max-num-seqs set an LLM engine; the image generation model"):
        servable_specs(build_parser().parse_args(["serve", str(SD), "--max-num-seqs", "4"]))
    store = tmp_path / "store"
    assert main(["pull", str(SD), "--task", "image_generation", "--name", "tiny-sd", "--models-dir",
                 str(store)]) == 0
    assert capsys.readouterr().out.strip() == str(store / "tiny-sd")
    assert (store / "tiny-sd" / "unet" / "openvino_model.xml").is_file()
    assert [(m.name, m.kind) for m in list_models(store)] == [("tiny-sd", "openvino_ir")]
    assert main(["serve", "--pull", "--source_model", "tiny-sd", "--task", "image_generation", "--models-dir",
                 str(store)]) == 0
    assert capsys.readouterr().out.strip() == str(store / "tiny-sd")
    assert main(["pull", str(RERANKER), "--task", "image_generation", "--name", "no-sd", "--models-dir",
                 str(store)]) == 1
    assert "is not an image generation OpenVINO IR folder (model_index.json and unet/" in capsys.readouterr().err
    assert [m.name for m in list_models(store)] == ["tiny-sd"]
