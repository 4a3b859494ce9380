"""graphs/voice.pbtxt end to end over HTTP with the official ``openai`` client: the tiny Whisper transcribes
``input_audio`` parts, SmolLM2 answers, the tiny SpeechT5 speaks the answer (unary ``message.audio``, streamed
``delta.audio``), text-only chats through the same graph, and bad input refused by name with the server serving on.
The tiny speech models have random weights: the tests decode the audio with PyAV and check its format, rate and
length, and that the transcript is the text the audio was made from, never the sound."""

import base64
import io
import json
import re
from pathlib import Path

import av
import httpx
import pytest

from ovserve.calculators.speech.sentences import split_sentences
from tests.calculators.audio.sounds import encode, sine
from tests.conftest import MODEL_NAME, start_server
from tests.server.test_bad_input import assert_openai_error
from tests.tiny_models import (
    SPEECHT5,
    SPEECHT5_OTHER_SPEAKER,
    SPEECHT5_RATE,
    SPEECHT5_SPEAKER,
    WHISPER,
    WHISPER_TEXT,
    speecht5_samples,
)

pytestmark = pytest.mark.slow

GRAPH = Path(__file__).resolve().parents[2] / "graphs" / "voice.pbtxt"
NAME = "voice"
#: Bounded: SmolLM2 is real, and every character it writes is spoken by the tiny SpeechT5.
MAX_TOKENS = 12


#: Half a second of a tone, as a client records it.
WAV = base64.b64encode(encode(sine(440, 0.5, 16_000), 16_000, "wav")).decode()


def voice_graph(default_model: Path) -> str:
    """graphs/voice.pbtxt with the test's models: SmolLM2, the tiny Whisper and the tiny SpeechT5 with two voices."""
    text = GRAPH.read_text()
    text = re.sub(r'models_path: "smollm2"', f'models_path: "{default_model}"', text)
    text = text.replace('models_path: "whisper"', f'models_path: "{WHISPER}"')
    return text.replace('models_path: "speecht5-tts"', f'models_path: "{SPEECHT5}"\n'
                        f'      voices {{ name: "default" path: "{SPEECHT5_SPEAKER}" }}\n'
                        f'      voices {{ name: "other" path: "{SPEECHT5_OTHER_SPEAKER}" }}\n'
                        f'      voice_aliases {{ name: "alloy" voice: "default" }}')


@pytest.fixture(scope="module")
def voice_server(default_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("voice")
    (root / "voice").mkdir()
    (root / "voice" / "graph.pbtxt").write_text(voice_graph(default_model))
    (root / "config.json").write_text(json.dumps({"model_config_list": [], "mediapipe_config_list": [
        {"name": NAME, "base_path": "voice"}]}))
    server = start_server(["--config_path", str(root / "config.json")], root)
    yield server
    server.stop()


@pytest.fixture
def client(voice_server):
    return voice_server.openai()


def spoken(audio_b64: str = WAV, fmt: str = "wav") -> list[dict]:
    return [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": audio_b64, "format": fmt}}]}]


def decode(data: bytes) -> tuple[str, int, float]:
    """(container, rate, seconds) of an answer's audio."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return container.format.name.split(",")[0], stream.rate, samples / stream.rate


def assert_spoken(data: bytes, transcript: str, container: str = "wav") -> None:
    """The audio decodes in the asked container at the model's rate, and is exactly as long as the tiny SpeechT5
    says the transcript, sentence by sentence (an mp3 may hold a frame of padding more): the audio was made from
    the transcript."""
    got, rate, seconds = decode(data)
    assert (got, rate) == (container, SPEECHT5_RATE)
    expected = sum(speecht5_samples(sentence) for sentence in split_sentences(transcript)) / SPEECHT5_RATE
    assert expected > 0
    assert expected - 0.005 <= seconds <= expected + (0.15 if container == "mp3" else 0.005), (seconds, expected)


def test_an_input_audio_chat_is_answered_in_speech(client):
    completion = client.chat.completions.create(model=NAME, messages=spoken(), modalities=["text", "audio"],
                                                audio={"voice": "alloy", "format": "wav"}, max_tokens=MAX_TOKENS)
    message = completion.choices[0].message
    assert message.content is None
    assert message.audio.id and message.audio.expires_at > 0
    assert_spoken(base64.b64decode(message.audio.data), message.audio.transcript)


def test_a_streamed_answer_comes_as_audio_deltas(client):
    stream = client.chat.completions.create(model=NAME, messages=spoken(), modalities=["text", "audio"],
                                            audio={"voice": "other", "format": "wav"}, max_tokens=MAX_TOKENS,
                                            stream=True, stream_options={"include_usage": True})
    transcript, data, ids, finishes, usage = [], [], set(), [], []
    for chunk in stream:
        if not chunk.choices:
            usage.append(chunk.usage)
            continue
        choice = chunk.choices[0]
        assert choice.delta.content is None
        audio = choice.delta.audio
        if audio is not None:
            ids.add(audio.id)
            transcript.append(audio.transcript or "")
            data.append(base64.b64decode(audio.data or ""))
        finishes.append(choice.finish_reason)
    assert len(ids) == 1 and finishes[-1] in ("stop", "length")
    assert len(usage) == 1 and usage[0].completion_tokens > 0
    assert_spoken(b"".join(data), "".join(transcript))


def test_the_audio_becomes_its_transcript_in_the_prompt(client):
    """The tiny Whisper says WHISPER_TEXT for any audio: a chat holding the audio reads the same prompt as one
    holding that text."""
    heard = client.chat.completions.create(model=NAME, messages=spoken(), max_tokens=1)
    typed = client.chat.completions.create(model=NAME, max_tokens=1, messages=[
        {"role": "user", "content": [{"type": "text", "text": WHISPER_TEXT.strip()}]}])
    assert heard.usage.prompt_tokens == typed.usage.prompt_tokens


def test_text_only_chats_go_through_the_same_graph(client):
    completion = client.chat.completions.create(model=NAME, messages=spoken(), max_tokens=MAX_TOKENS)
    assert completion.choices[0].message.content and completion.choices[0].message.audio is None
    typed = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi!"}],
                                           max_tokens=MAX_TOKENS)
    assert typed.choices[0].message.content


def test_the_transcript_is_what_the_audio_was_made_from(client):
    """An mp3 made by the graph's own speech is taken as input too; the reply's transcript matches its audio."""
    completion = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Say hi."}],
                                                modalities=["text", "audio"], audio={"voice": "alloy", "format": "mp3"},
                                                max_tokens=MAX_TOKENS)
    audio = completion.choices[0].message.audio
    assert_spoken(base64.b64decode(audio.data), audio.transcript, container="mp3")
    again = client.chat.completions.create(model=NAME, messages=spoken(audio.data, "mp3"), max_tokens=MAX_TOKENS)
    assert again.choices[0].message.content


def post(server, body):
    return httpx.post(f"{server.base_url}/v3/chat/completions", json={"model": NAME, "max_tokens": MAX_TOKENS,
                                                                       **body}, timeout=120)


BAD = [
    ({"messages": spoken("not base64!")}, "messages[0].content[0].input_audio.data"),
    ({"messages": spoken(base64.b64encode(b"RIFF\x00\x00\x00\x00WAVEjunk").decode())},
     "messages[0].content[0].input_audio.data"),
    ({"messages": spoken(WAV, "mp3")}, "messages[0].content[0].input_audio.data"),
    ({"messages": spoken(WAV, "flac")}, "messages[0].content[0].input_audio.format"),
    ({"messages": spoken(), "modalities": ["text", "audio"], "audio": {"voice": "nobody", "format": "wav"}},
     "audio.voice"),
    ({"messages": spoken(), "modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "ogg"}},
     "audio.format"),
    ({"messages": spoken(), "modalities": ["text", "audio"]}, "audio"),
    ({"messages": spoken(), "modalities": ["text", "video"]}, "modalities"),
    ({"messages": spoken(), "audio": {"voice": "alloy", "format": "wav"}}, "audio"),
    ({"messages": spoken(), "modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}, "n": 2},
     "n"),
    ({"messages": spoken(), "modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"},
      "store": True}, "store"),
    ({"messages": [{"role": "assistant", "audio": {"id": "audio_1"}}, *spoken()]}, "messages[0].audio"),
]


@pytest.mark.parametrize(("body", "param"), BAD, ids=[param for _, param in BAD])
def test_bad_input_is_refused_by_name_and_the_server_serves_on(voice_server, body, param):
    answer = post(voice_server, body)
    assert_openai_error(answer, 400, param)
    good = post(voice_server, {"messages": spoken(), "modalities": ["text", "audio"],
                               "audio": {"voice": "alloy", "format": "wav"}})
    assert good.status_code == 200, good.text
    assert good.json()["choices"][0]["message"]["audio"]["data"]


def test_the_plain_llm_graph_refuses_audio_by_name(server):
    body = {"model": MODEL_NAME, "max_tokens": 4}
    for extra, param in [({"messages": spoken()}, "messages[0].content"),
                         ({"messages": [{"role": "user", "content": "Hi"}], "modalities": ["text", "audio"]},
                          "modalities"),
                         ({"messages": [{"role": "user", "content": "Hi"}], "audio": {"voice": "alloy",
                                                                                      "format": "wav"}}, "audio")]:
        answer = httpx.post(f"{server.base_url}/v3/chat/completions", json={**body, **extra}, timeout=60)
        error = assert_openai_error(answer, 400, param)
        assert "voice graph" in error["message"]


def test_a_client_gone_mid_answer_leaves_the_server_serving(voice_server):
    body = {"model": NAME, "max_tokens": 48, "stream": True, "messages": spoken(), "modalities": ["text", "audio"],
            "audio": {"voice": "alloy", "format": "pcm16"}}
    with httpx.stream("POST", f"{voice_server.base_url}/v3/chat/completions", json=body, timeout=120) as answer:
        assert answer.status_code == 200
        assert next(answer.iter_raw())
    good = post(voice_server, {"messages": spoken(), "modalities": ["text", "audio"],
                               "audio": {"voice": "alloy", "format": "wav"}})
    assert good.status_code == 200, good.text
    assert good.json()["choices"][0]["message"]["audio"]["data"]
