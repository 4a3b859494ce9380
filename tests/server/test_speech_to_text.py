"""/v3/audio/transcriptions and /translations on the tiny Whisper (``models/tiny/whisper``), as clients call them: the
official ``openai`` client unary and streaming, every response format and upload format, hostile input (and the
server serving on after each), OVMS's S2tCalculator and SttCalculator graphs served unchanged, and
``--task speech2text``. The tiny model says WHISPER_TEXT once per 30 s window: the tests check plumbing, never a
transcript's quality."""

import json
import os
import signal
import textwrap
import time

import httpx
import openai
import pytest

from tests.calculators.audio.sounds import encode, sine
from tests.conftest import start_server
from tests.server.test_bad_input import assert_openai_error
from tests.tiny_models import WHISPER, WHISPER_SEGMENT_SECONDS, WHISPER_TEXT

#: The openai client marks its translations as deprecated (OpenAI's newer models do not translate); the call works.
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")]

NAME = "whisper"
SAID = WHISPER_TEXT.strip()


def wav(seconds: float = 1.0, rate: int = 16_000) -> bytes:
    return encode(sine(440, seconds, rate), rate, "wav")


@pytest.fixture(scope="module")
def whisper_server(tmp_path_factory):
    """The tiny Whisper served as `ovserve serve --task speech2text` serves a folder, with word timestamps on."""
    server = start_server(["--model", str(WHISPER), "--model-name", NAME, "--task", "speech2text",
                           "--enable-word-timestamps"], tmp_path_factory.mktemp("whisper"))
    yield server
    server.stop()


@pytest.fixture
def client(whisper_server):
    return whisper_server.openai()


@pytest.fixture
def a_wav_file(tmp_path):
    path = tmp_path / "a.wav"
    path.write_bytes(wav())
    return path


def post(server, path="/v3/audio/transcriptions", data=None, files=None, **options):
    fields = {"model": NAME, **(data or {})}
    return httpx.post(f"{server.base_url}{path}", data=fields,
                      files=files if files is not None else {"file": ("a.wav", wav(), "audio/wav")}, timeout=60,
                      **options)


def still_serves(server):
    assert post(server).json()["text"] == SAID


def test_the_openai_client_transcribes_an_open_file(client, a_wav_file):
    with open(a_wav_file, "rb") as file:
        transcription = client.audio.transcriptions.create(model=NAME, file=file)
    assert transcription.text == SAID
    assert transcription.usage is not None and transcription.usage.type == "duration"
    assert transcription.usage.seconds == 1


def test_a_stream_sends_deltas_then_done_with_their_text(client, a_wav_file):
    with open(a_wav_file, "rb") as file:
        events = list(client.audio.transcriptions.create(model=NAME, file=file, stream=True))
    deltas = [event.delta for event in events[:-1]]
    assert [event.type for event in events] == ["transcript.text.delta"] * len(deltas) + ["transcript.text.done"]
    assert len(deltas) > 1 and "".join(deltas) == events[-1].text == SAID


def test_audio_longer_than_one_window_streams_too(client):
    """GenAI 2026.4's streamer goes on past the first 30 s window: no server-side chunking is needed."""
    events = list(client.audio.transcriptions.create(model=NAME, file=("long.wav", wav(40)), stream=True))
    assert "".join(event.delta for event in events[:-1]) == events[-1].text == f"{SAID}{WHISPER_TEXT}"


def test_the_text_srt_and_vtt_formats(client):
    assert client.audio.transcriptions.create(model=NAME, file=("a.wav", wav()), response_format="text") == \
        SAID + "\n"
    srt = client.audio.transcriptions.create(model=NAME, file=("a.wav", wav(40)), response_format="srt")
    assert srt == (f"1\n00:00:00,000 --> 00:00:01,000\n{SAID}\n\n"
                   f"2\n00:00:30,000 --> 00:00:31,000\n{SAID}\n")
    vtt = client.audio.transcriptions.create(model=NAME, file=("a.wav", wav()), response_format="vtt")
    assert vtt == f"WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n{SAID}\n\n"


def test_verbose_json_with_segments_and_words(client):
    verbose = client.audio.transcriptions.create(model=NAME, file=("a.wav", wav(3)), response_format="verbose_json",
                                                 timestamp_granularities=["word", "segment"], language="en")
    assert verbose.language == "english" and verbose.duration == pytest.approx(3.0) and verbose.text == SAID
    assert [(s.start, s.end, s.text) for s in verbose.segments] == [(0.0, WHISPER_SEGMENT_SECONDS, WHISPER_TEXT)]
    words = [(w.word, w.start, w.end) for w in verbose.words]
    assert " ".join(word for word, _, _ in words) == SAID
    assert all(0.0 <= start <= end <= 3.0 for _, start, end in words)


def test_translations_through_the_openai_client(client):
    assert client.audio.translations.create(model=NAME, file=("a.wav", wav())).text == SAID
    verbose = client.audio.translations.create(model=NAME, file=("a.wav", wav()), response_format="verbose_json",
                                               prompt="Earlier words.", temperature=0.5)
    assert verbose.text == SAID and verbose.segments[0].end == WHISPER_SEGMENT_SECONDS


@pytest.mark.parametrize("fmt", ["flac", "mp3", "ogg", "webm", "m4a"])
def test_every_accepted_upload_format_is_transcribed(whisper_server, fmt):
    data = encode(sine(440, 1.0, 48_000, channels=2), 48_000, fmt)
    assert post(whisper_server, files={"file": (f"a.{fmt}", data)}).json()["text"] == SAID


def test_the_model_may_be_left_out_and_v1_serves_the_same(whisper_server):
    answer = httpx.post(f"{whisper_server.base_url}/v1/audio/transcriptions", files={"file": ("a.wav", wav())})
    assert answer.status_code == 200 and answer.json()["text"] == SAID


@pytest.mark.parametrize(("data", "files", "status", "param", "words"), [
    ({}, {"file": ("a.wav", b"RIFF\x00\x00\x00\x00WAVEfmt garbage")}, 400, "file", "Accepted audio formats: wav"),
    ({}, {"file": ("a.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)}, 400, "file", "not in a recognized audio format"),
    ({}, {"file": ("a.wav", b"")}, 400, "file", "empty"),
    ({}, {"image": ("a.wav", b"RIFF")}, 400, "file", "no 'file' part"),
    ({"response_format": "mp3"}, None, 400, "response_format", ""),
    ({"temperature": "2"}, None, 400, "temperature", ""),
    ({"language": "xx"}, None, 400, "language", "ISO-639-1"),
    ({"stream": "true", "response_format": "srt"}, None, 400, "stream", "use response_format 'json' or 'text'"),
    ({"stream": "maybe"}, None, 400, "stream", ""),
    ({"timestamp_granularities[]": "word"}, None, 400, "timestamp_granularities", "verbose_json"),
    ({"include[]": "logprobs"}, None, 400, "include", "log-probabilities"),
    ({"known_speaker_names[]": "ann"}, None, 400, "known_speaker_names", "diarization"),
    ({"chunking_strategy": "server_vad"}, None, 400, "chunking_strategy", ""),
    ({"prompt": "x" * 10_001}, None, 400, "prompt", ""),
    ({"model": "nobody"}, None, 404, "model", ""),
])
def test_bad_transcription_requests_get_a_400_naming_the_field(whisper_server, data, files, status, param, words):
    assert_openai_error(post(whisper_server, data=data, files=files), status, param, words)
    still_serves(whisper_server)


@pytest.mark.parametrize("field", ["language", "stream", "timestamp_granularities[]"])
def test_translations_refuse_transcription_fields_by_name(whisper_server, field):
    response = post(whisper_server, "/v3/audio/translations", data={field: "en" if field == "language" else "true"})
    assert_openai_error(response, 400, field.removesuffix("[]"), "translations take no")


def test_bodies_that_are_no_audio_form(whisper_server):
    as_json = httpx.post(f"{whisper_server.base_url}/v3/audio/transcriptions", json={"model": NAME, "file": "a.wav"})
    assert_openai_error(as_json, 400, None, "not multipart/form-data")
    two_files = post(whisper_server, files=[("file", ("a.wav", wav())), ("file", ("b.wav", wav()))])
    assert_openai_error(two_files, 400, "file", "more than 1 file")
    cut = httpx.post(f"{whisper_server.base_url}/v3/audio/transcriptions", content=b"--xyz\r\nContent-Disp",
                     headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert_openai_error(cut, 400, None, "Invalid multipart form")
    huge_field = post(whisper_server, data={"prompt": "x" * 70_000})
    assert_openai_error(huge_field, 400, "prompt", "longer than 64 KiB")
    still_serves(whisper_server)


def test_unknown_fields_are_accepted_and_a_long_prompt_keeps_its_end(whisper_server):
    """As with chat requests, a field nobody defined is accepted and logged once; a prompt longer than Whisper reads
    (224 tokens) is cut to its end, as OpenAI documents, never handed whole to GenAI (which fails on it)."""
    answer = post(whisper_server, data={"my_own_field": "1", "prompt": "word " * 2000, "temperature": "0.3"})
    assert answer.status_code == 200 and answer.json()["text"] == SAID
    assert any("'my_own_field' (unknown)" in line for line in whisper_server.lines)


def test_a_client_that_leaves_a_stream_cancels_it_and_the_engine_serves_on(whisper_server):
    with httpx.stream("POST", f"{whisper_server.base_url}/v3/audio/transcriptions", timeout=60,
                      data={"model": NAME, "stream": "true"}, files={"file": ("long.wav", wav(300))}) as response:
        assert response.status_code == 200
        next(response.iter_lines())
    still_serves(whisper_server)
    assert whisper_server.metric("ovserve_engine_starts_total") == 1


OVMS_S2T_GRAPH = """
    input_stream: "HTTP_REQUEST_PAYLOAD:input"
    output_stream: "HTTP_RESPONSE_PAYLOAD:output"
    node {
      name: "S2tExecutor"
      input_side_packet: "STT_NODE_RESOURCES:s2t_servable"
      calculator: "S2tCalculator"
      input_stream: "LOOPBACK:loopback"
      input_stream: "HTTP_REQUEST_PAYLOAD:input"
      output_stream: "LOOPBACK:loopback"
      output_stream: "HTTP_RESPONSE_PAYLOAD:output"
      input_stream_info: {
        tag_index: 'LOOPBACK:0',
        back_edge: true
      }
      node_options: {
        [type.googleapis.com / mediapipe.S2tCalculatorOptions]: {
          models_path: "./",
          plugin_config: '{ "NUM_STREAMS": "1" }',
          target_device: "CPU",
          max_audio_seconds: 5,
          max_file_bytes: 200000
        }
      }
      input_stream_handler {
        input_stream_handler: "SyncSetInputStreamHandler",
        options {
          [mediapipe.SyncSetInputStreamHandlerOptions.ext] {
            sync_set {
              tag_index: "LOOPBACK:0"
            }
          }
        }
      }
    }
"""

OVMS_STT_GRAPH = """
    input_stream: "HTTP_REQUEST_PAYLOAD:input"
    output_stream: "HTTP_RESPONSE_PAYLOAD:output"
    node {
        name: "SttExecutor"
        calculator: "SttCalculator"
        input_side_packet: "STT_NODE_RESOURCES:stt_servable"
        input_stream: "HTTP_REQUEST_PAYLOAD:input"
        output_stream: "HTTP_RESPONSE_PAYLOAD:output"
        node_options: {
            [type.googleapis.com / mediapipe.SttCalculatorOptions]: {
                models_path: "../whisper-model",
                device: "CPU",
                plugin_config: '{ "NUM_STREAMS": "1" }'
            }
        }
    }
"""


@pytest.fixture(scope="module")
def ovms_server(tmp_path_factory):
    """OVMS's speech graphs, as its 2026 export and its first (SttCalculator) release write them, beside the model."""
    root = tmp_path_factory.mktemp("ovms-speech")
    model_dir = root / "whisper-model"
    model_dir.mkdir()
    for path in WHISPER.iterdir():
        (model_dir / path.name).symlink_to(path)
    (model_dir / "graph.pbtxt").write_text(textwrap.dedent(OVMS_S2T_GRAPH))
    (root / "older").mkdir()
    (root / "older" / "graph.pbtxt").write_text(textwrap.dedent(OVMS_STT_GRAPH))
    (root / "config.json").write_text(json.dumps({"model_config_list": [], "mediapipe_config_list": [
        {"name": "speech2text", "base_path": "whisper-model"}, {"name": "stt", "base_path": "older"}]}))
    server = start_server(["--config_path", str(root / "config.json")], root)
    yield server
    server.stop()


@pytest.mark.parametrize("model", ["speech2text", "stt"])
def test_ovms_speech_graphs_are_served_unchanged(ovms_server, model):
    client = ovms_server.openai()
    assert client.audio.transcriptions.create(model=model, file=("a.wav", wav())).text == SAID
    events = list(client.audio.transcriptions.create(model=model, file=("a.wav", wav()), stream=True))
    assert events[-1].type == "transcript.text.done" and events[-1].text == SAID
    assert client.audio.translations.create(model=model, file=("a.wav", wav())).text == SAID


def test_the_graph_options_bound_uploads_and_word_timestamps_need_enabling(ovms_server):
    def ask(data=None, files=None):
        return httpx.post(f"{ovms_server.base_url}/v3/audio/transcriptions", data={"model": "speech2text", **(data or {})},
                          files=files or {"file": ("a.wav", wav())}, timeout=60)

    too_long = ask(files={"file": ("long.flac", encode(sine(440, 6.0, 8_000), 8_000, "flac"))})
    assert_openai_error(too_long, 400, "file", "the limit is 5 s")
    too_large = ask(files={"file": ("big.wav", wav(4.0, 48_000))})
    assert_openai_error(too_large, 413, "file", "larger than the 200000-byte limit")
    words = ask({"response_format": "verbose_json", "timestamp_granularities[]": "word"})
    assert_openai_error(words, 400, "timestamp_granularities", "enable_word_timestamps: true")
    assert ask().json()["text"] == SAID


def test_the_engine_restarts_after_it_is_killed_and_serves_again(ovms_server):
    before = ovms_server.engine_pids()
    for pid in before:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            answer = ovms_server.openai().audio.transcriptions.create(model="stt", file=("a.wav", wav()))
            if answer.text == SAID:
                break
        except openai.APIStatusError as error:
            assert error.status_code == 503
        time.sleep(0.5)
    else:
        pytest.fail("the speech engine did not come back")
    assert not set(before) & set(ovms_server.engine_pids())
