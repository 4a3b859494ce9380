"""The voice graph's listening node's checks, below HTTP: the audio output a chat request asks for, and its
input_audio parts (base64 of a file in the format the part names)."""

import base64

import pytest

from ovserve.calculators.speech.model import TtsModel
from ovserve.calculators.voice.listen import SpokenAnswer, audio_bytes, audio_parts, spoken_answer
from ovserve.errors import RequestError
from tests.calculators.audio.sounds import encode, sine

#: A speech model as the node sees it: only its voices are read here (no engine is asked anything).
SPEECH = TtsModel(engine=None, voices={"default": "default", "alloy": "default", "other": "other"})  # type: ignore[arg-type]


def refused(call, param: str) -> RequestError:
    with pytest.raises(RequestError) as caught:
        call()
    assert caught.value.param == param
    return caught.value


def test_audio_output_is_asked_for_with_modalities_and_audio():
    body = {"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "pcm16"}, "stream": True}
    assert spoken_answer(body, SPEECH) == SpokenAnswer(True, "default", "pcm", True)
    assert spoken_answer({"modalities": ["text"]}, SPEECH) == SpokenAnswer(False)
    assert spoken_answer({}, SPEECH) == SpokenAnswer(False)
    assert spoken_answer({"modalities": ["text", "audio"], "audio": {"voice": {"id": "other"}, "format": "mp3"}},
                         SPEECH).voice == "other"


@pytest.mark.parametrize(("body", "param"), [
    ({"modalities": ["text", "audio"]}, "audio"),
    ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
    ({"modalities": "audio"}, "modalities"),
    ({"modalities": ["text", "audio"], "audio": {"voice": "ash", "format": "wav"}}, "audio.voice"),
    ({"modalities": ["text", "audio"], "audio": {"voice": 3, "format": "wav"}}, "audio.voice"),
    ({"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "ogg"}}, "audio.format"),
    ({"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav", "speed": 2}}, "audio.speed"),
    ({"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}, "n": 2}, "n"),
    ({"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}, "store": True}, "store"),
])
def test_audio_output_that_cannot_be_given_is_refused_by_name(body, param):
    refused(lambda: spoken_answer(body, SPEECH), param)


def test_an_unknown_voice_lists_the_known_ones():
    error = refused(lambda: spoken_answer({"modalities": ["audio"], "audio": {"voice": "ash", "format": "wav"}},
                                          SPEECH), "audio.voice")
    assert "alloy, default, other" in error.message


def part(data: str, fmt: str = "wav") -> dict:
    return {"type": "input_audio", "input_audio": {"data": data, "format": fmt}}


def test_input_audio_parts_are_found_in_every_message():
    body = {"messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": [{"type": "text", "text": "Listen:"}, part("x")]}]}
    assert audio_parts(body) == [(1, 1, part("x"))]


def test_input_audio_bytes_are_checked_against_their_format():
    wav = encode(sine(440, 0.2, 16_000), 16_000, "wav")
    assert audio_bytes("p", part(base64.b64encode(wav).decode())) == wav
    refused(lambda: audio_bytes("p", part("%%%")), "p.input_audio.data")
    refused(lambda: audio_bytes("p", part(base64.b64encode(wav).decode(), "mp3")), "p.input_audio.data")
    refused(lambda: audio_bytes("p", part(base64.b64encode(b"just text").decode())), "p.input_audio.data")
    refused(lambda: audio_bytes("p", part(base64.b64encode(wav).decode(), "flac")), "p.input_audio.format")
    refused(lambda: audio_bytes("p", {"type": "input_audio"}), "p.input_audio")
