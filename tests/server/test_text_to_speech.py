"""/v3/audio/speech on the tiny SpeechT5 (``models/tiny/speecht5``), as clients call it: the official ``openai`` client
in every format, unary and with ``with_streaming_response``, the SSE stream, voices and aliases, ``speed``, hostile
input (and the server serving on after each), OVMS's T2sCalculator and TtsCalculator graphs served unchanged, and
``--task text2speech``. The tiny model says any text for 1,024 samples a token: the tests decode what comes back with
PyAV and check the format, the rate and a duration that matches those samples, never the sound."""

import base64
import io
import json
import textwrap
import time

import av
import httpx
import pytest

from tests.conftest import start_server
from tests.server.test_bad_input import assert_openai_error
from tests.tiny_models import SPEECHT5, SPEECHT5_OTHER_SPEAKER, SPEECHT5_RATE, SPEECHT5_SPEAKER, speecht5_samples

pytestmark = pytest.mark.slow

NAME = "tts"
SENTENCES = ["Hello there.", "How are you today?", "Fine, thanks!"]
TEXT = " ".join(SENTENCES)
#: The tiny model's speech for TEXT, in seconds: each sentence is said on its own.
SECONDS = sum(speecht5_samples(sentence) for sentence in SENTENCES) / SPEECHT5_RATE
#: (container, codec, rate) each format decodes as; pcm is raw 16-bit samples at OpenAI's 24 kHz.
FORMATS = {"mp3": ("mp3", "mp3float", SPEECHT5_RATE), "opus": ("ogg", "opus", 48_000),
           "aac": ("aac", "aac", SPEECHT5_RATE), "flac": ("flac", "flac", SPEECHT5_RATE),
           "wav": ("wav", "pcm_s16le", SPEECHT5_RATE), "pcm": ("pcm", "pcm_s16le", 24_000)}
#: How much longer than its samples a format may decode (an mp3 or aac frame of padding).
SLACK = 0.15


def decode(data: bytes, response_format: str) -> tuple[str, str, int, float]:
    """(container, codec, rate, seconds) of what came back."""
    if response_format == "pcm":
        return "pcm", "pcm_s16le", 24_000, len(data) / 2 / 24_000
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return container.format.name.split(",")[0], stream.codec_context.name, stream.rate, samples / stream.rate


def assert_speech(data: bytes, response_format: str, seconds: float = SECONDS) -> None:
    container, codec, rate, duration = decode(data, response_format)
    assert (container, codec, rate) == FORMATS[response_format]
    assert seconds - 0.005 <= duration <= seconds + SLACK, (duration, seconds)


@pytest.fixture(scope="module")
def tts_server(tmp_path_factory):
    """The tiny SpeechT5 served as `ovserve serve --task text2speech` serves a folder, with two voices and an alias."""
    server = start_server(["--model", str(SPEECHT5), "--model-name", NAME, "--task", "text2speech",
                           "--voice", f"default={SPEECHT5_SPEAKER}", "--voice", f"other={SPEECHT5_OTHER_SPEAKER}",
                           "--voice-alias", "alloy=default"], tmp_path_factory.mktemp("tts"))
    yield server
    server.stop()


@pytest.fixture
def client(tts_server):
    return tts_server.openai()


def post(server, body, **options):
    return httpx.post(f"{server.base_url}/v3/audio/speech", json={"model": NAME, **body}, timeout=60, **options)


def still_serves(server):
    answer = post(server, {"input": "Still here.", "response_format": "wav"})
    assert answer.status_code == 200
    assert_speech(answer.content, "wav", speecht5_samples("Still here.") / SPEECHT5_RATE)


@pytest.mark.parametrize("response_format", sorted(FORMATS))
def test_the_openai_client_gets_speech_in_every_format(client, response_format):
    speech = client.audio.speech.create(model=NAME, voice="alloy", input=TEXT, response_format=response_format)
    assert speech.response.headers["content-type"].startswith("audio/")
    assert_speech(speech.content, response_format)


def test_mp3_is_the_default_and_the_wav_header_says_its_length(client):
    speech = client.audio.speech.create(model=NAME, voice="default", input=TEXT)
    assert speech.response.headers["content-type"] == "audio/mpeg"
    assert_speech(speech.content, "mp3")
    wav = client.audio.speech.create(model=NAME, voice="default", input=TEXT, response_format="wav").content
    assert int.from_bytes(wav[4:8], "little") == len(wav) - 8


@pytest.mark.parametrize("response_format", ["mp3", "wav", "pcm", "opus"])
def test_with_streaming_response_streams_the_file_sentence_by_sentence(client, response_format):
    with client.audio.speech.with_streaming_response.create(
            model=NAME, voice="alloy", input=TEXT, response_format=response_format, stream_format="audio") as response:
        assert response.headers["content-type"].startswith("audio/")
        data = b"".join(response.iter_bytes())
    assert_speech(data, response_format)


def test_the_sse_stream_sends_audio_deltas_then_done_with_usage(tts_server):
    with httpx.stream("POST", f"{tts_server.base_url}/v3/audio/speech", timeout=60,
                      json={"model": NAME, "input": TEXT, "response_format": "pcm", "stream_format": "sse"}) as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[len("data: "):]) for line in answer.iter_lines() if line.startswith("data: ")]
    *deltas, done = events
    assert [event["type"] for event in deltas] == ["speech.audio.delta"] * len(deltas) and len(deltas) >= 3
    assert done == {"type": "speech.audio.done", "usage": {"input_tokens": sum(len(s) + 2 for s in SENTENCES),
                                                            "output_tokens": 0,
                                                            "total_tokens": sum(len(s) + 2 for s in SENTENCES)}}
    audio = b"".join(base64.b64decode(event["audio"]) for event in deltas)
    assert_speech(audio, "pcm")
    first = base64.b64decode(deltas[0]["audio"])  # the first sentence, before the others were spoken
    assert abs(len(first) / 2 / 24_000 - speecht5_samples(SENTENCES[0]) / SPEECHT5_RATE) < 0.01


def test_voices_aliases_and_voice_objects(client):
    def say(voice):
        return client.audio.speech.create(model=NAME, voice=voice, input="Hello there.", response_format="wav").content

    default, other = say("default"), say("other")
    assert len(default) == len(other) and default != other
    assert say("alloy") == default  # an alias of the same voice: the same computation
    assert say({"id": "other"}) == other


@pytest.mark.parametrize("speed", [0.5, 2.0, 4.0])
def test_speed_stretches_the_speech(client, speed):
    speech = client.audio.speech.create(model=NAME, voice="alloy", input=TEXT, response_format="wav", speed=speed)
    _, _, rate, seconds = decode(speech.content, "wav")
    assert rate == SPEECHT5_RATE
    assert abs(seconds - SECONDS / speed) <= 0.05 * SECONDS / speed + SLACK


def test_a_request_without_a_model_goes_to_the_only_speech_model(tts_server):
    answer = httpx.post(f"{tts_server.base_url}/v1/audio/speech", json={"input": "Hi.", "response_format": "flac"},
                        timeout=60)
    assert answer.status_code == 200 and answer.headers["content-type"] == "audio/flac"
    assert_speech(answer.content, "flac", speecht5_samples("Hi.") / SPEECHT5_RATE)


@pytest.mark.parametrize(("body", "param", "words"), [
    ({"input": ""}, "input", "the input is empty"),
    ({"input": "   \n"}, "input", "the input is empty"),
    ({"input": "x" * 4097}, "input", "the limit is 4096"),
    ({"input": 5}, "input", ""),
    ({}, "input", ""),
    ({"input": "Hi.", "voice": "nova"}, "voice", "this model speaks in the voices alloy, default, other"),
    ({"input": "Hi.", "voice": {"id": "nova"}}, "voice", "unknown voice 'nova'"),
    ({"input": "Hi.", "response_format": "ogg"}, "response_format", ""),
    ({"input": "Hi.", "speed": 0.1}, "speed", ""),
    ({"input": "Hi.", "speed": 4.5}, "speed", ""),
    ({"input": "Hi.", "stream_format": "chunks"}, "stream_format", ""),
    ({"input": "Hi.", "stream": True}, "stream", "set stream_format"),
    ({"input": "Hi.", "instructions": "Speak cheerfully."}, "instructions", "cannot be honoured"),
    ({"input": "Hi.", "language": "de"}, "language", "speaks English only"),
])
def test_bad_input_is_a_400_naming_the_field_and_the_server_serves_on(tts_server, body, param, words):
    assert_openai_error(post(tts_server, body), 400, param, words)
    still_serves(tts_server)


def test_other_endpoints_of_a_speech_model_say_what_it_serves(tts_server):
    answer = httpx.post(f"{tts_server.base_url}/v3/chat/completions", timeout=60,
                        json={"model": NAME, "messages": [{"role": "user", "content": "Hi"}]})
    assert_openai_error(answer, 400, "model", "it serves /audio/speech")


def test_a_client_that_goes_away_mid_stream_leaves_the_server_serving(tts_server):
    text = " ".join(f"Sentence number {index}." for index in range(30))
    with httpx.stream("POST", f"{tts_server.base_url}/v3/audio/speech", timeout=60,
                      json={"model": NAME, "input": text, "stream_format": "audio", "response_format": "pcm"}) as answer:
        assert answer.status_code == 200
        assert next(answer.iter_raw())
    still_serves(tts_server)


OVMS_T2S_GRAPH = """
    input_stream: "HTTP_REQUEST_PAYLOAD:input"
    output_stream: "HTTP_RESPONSE_PAYLOAD:output"
    node {
      name: "T2sExecutor"
      calculator: "T2sCalculator"
      input_side_packet: "TTS_NODE_RESOURCES:t2s_servable"
      input_stream: "HTTP_REQUEST_PAYLOAD:input"
      output_stream: "HTTP_RESPONSE_PAYLOAD:output"
      node_options: {
        [type.googleapis.com / mediapipe.T2sCalculatorOptions]: {
          models_path: "./",
          plugin_config: '{"NUM_STREAMS": "1" }',
          target_device: "CPU"
          voices { name: "default" path: "./speaker.bin" }
          voices { name: "other" path: "other_speaker.bin" }
          speed_min: 0.5
          speed_max: 2.0
          max_queued_requests: 1
        }
      }
    }
"""

OVMS_TTS_GRAPH = """
    input_stream: "HTTP_REQUEST_PAYLOAD:input"
    output_stream: "HTTP_RESPONSE_PAYLOAD:output"
    node {
      name: "TtsExecutor"
      input_side_packet: "TTS_NODE_RESOURCES:tts_servable"
      calculator: "TtsCalculator"
      input_stream: "HTTP_REQUEST_PAYLOAD:input"
      output_stream: "HTTP_RESPONSE_PAYLOAD:output"
      node_options: {
        [type.googleapis.com / mediapipe.TtsCalculatorOptions]: {
          models_path: "../speecht5-model",
          plugin_config: '{ "NUM_STREAMS": "1" }',
          device: "CPU"
        }
      }
    }
"""


@pytest.fixture(scope="module")
def ovms_server(tmp_path_factory):
    """OVMS's speech graphs, as its 2026 export (with voices and speed bounds) and its first (TtsCalculator) release
    write them, beside the model."""
    root = tmp_path_factory.mktemp("ovms-tts")
    model_dir = root / "speecht5-model"
    model_dir.mkdir()
    for path in SPEECHT5.iterdir():
        (model_dir / path.name).symlink_to(path)
    (model_dir / "graph.pbtxt").write_text(textwrap.dedent(OVMS_T2S_GRAPH))
    (root / "older").mkdir()
    (root / "older" / "graph.pbtxt").write_text(textwrap.dedent(OVMS_TTS_GRAPH))
    (root / "config.json").write_text(json.dumps({"model_config_list": [], "mediapipe_config_list": [
        {"name": "text2speech", "base_path": "speecht5-model"}, {"name": "tts", "base_path": "older"}]}))
    server = start_server(["--config_path", str(root / "config.json")], root)
    yield server
    server.stop()


@pytest.mark.parametrize("model", ["text2speech", "tts"])
def test_ovms_speech_graphs_are_served_unchanged(ovms_server, model):
    client = ovms_server.openai()
    speech = client.audio.speech.create(model=model, voice="default", input=TEXT, response_format="wav")
    assert_speech(speech.content, "wav")
    with client.audio.speech.with_streaming_response.create(model=model, voice="default", input=TEXT,
                                                            stream_format="audio") as response:
        assert_speech(b"".join(response.iter_bytes()), "mp3")


def test_the_graph_s_voices_and_speed_bounds_hold(ovms_server):
    def ask(body):
        return httpx.post(f"{ovms_server.base_url}/v3/audio/speech", timeout=60,
                          json={"model": "text2speech", "input": "Hello there.", "response_format": "wav", **body})

    assert ask({"voice": "other"}).content != ask({"voice": "default"}).content
    assert_openai_error(ask({"voice": "alloy"}), 400, "voice", "default, other")
    assert_openai_error(ask({"speed": 3.0}), 400, "speed", "from 0.5 to 2")
    older = httpx.post(f"{ovms_server.base_url}/v3/audio/speech", timeout=60,
                       json={"model": "tts", "input": "Hi.", "voice": "other"})
    assert_openai_error(older, 400, "voice", "this model speaks in the voices default")  # its built-in speaker only


def test_a_model_holds_at_most_its_queued_requests(ovms_server):
    """max_queued_requests 1: while one request is held (a stream its client does not read: 13 MB of pcm, more than
    the sockets buffer), the next gets 503."""
    text = " ".join(f"Sentence number {index}." for index in range(180))
    with httpx.stream("POST", f"{ovms_server.base_url}/v3/audio/speech", timeout=60,
                      json={"model": "text2speech", "input": text, "stream_format": "audio",
                            "response_format": "pcm"}) as held:
        assert held.status_code == 200
        chunks = held.iter_raw()  # kept: a dropped iterator closes the response
        assert next(chunks)
        busy = httpx.post(f"{ovms_server.base_url}/v3/audio/speech", timeout=60,
                          json={"model": "text2speech", "input": "Hi."})
        assert_openai_error(busy, 503)
        assert busy.headers["retry-after"] == "1"
    for _ in range(100):  # the held request ends once its client has gone
        answer = httpx.post(f"{ovms_server.base_url}/v3/audio/speech", timeout=60,
                            json={"model": "text2speech", "input": "Hi.", "response_format": "wav"})
        if answer.status_code == 200:
            break
        time.sleep(0.1)
    assert answer.status_code == 200
