"""The speech model's voices (from the model's voices/ folder, the graph and aliases; one called default) and its
options (OVMS's T2sCalculatorOptions and ovserve's own), checked as the graph loads."""

import numpy as np
import pytest
from pydantic import ValidationError

from ovserve.calculators.speech.model import (
    T2sCalculatorOptions,
    TtsCalculatorOptions,
    VoiceAlias,
    VoiceFile,
    voice_files,
    voice_names,
)
from ovserve.errors import RequestError


@pytest.fixture
def model_folder(tmp_path):
    folder = tmp_path / "model"
    (folder / "voices").mkdir(parents=True)
    for name in ("af_alloy", "bm_lewis"):
        np.zeros(512, "<f4").tofile(folder / "voices" / f"{name}.bin")
    (folder / "voices" / "notes.txt").write_text("not a voice")
    return folder


def test_voices_come_from_the_model_s_folder_then_the_graph(model_folder, tmp_path):
    np.save(tmp_path / "mine.npy", np.zeros(512, np.float32))
    listed = [VoiceFile(name="mine", path="mine.npy"), VoiceFile(name="af_alloy", path=str(tmp_path / "mine.npy"))]
    files = voice_files(model_folder, tmp_path, listed)
    assert files == {"af_alloy": tmp_path / "mine.npy", "bm_lewis": model_folder / "voices" / "bm_lewis.bin",
                     "mine": tmp_path / "mine.npy"}


def test_a_listed_voice_must_be_a_bin_or_npy_file_that_exists(model_folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="the voice 'gone': no speaker embedding file at"):
        voice_files(model_folder, tmp_path, [VoiceFile(name="gone", path="gone.bin")])
    (tmp_path / "voice.wav").write_bytes(b"RIFF")
    with pytest.raises(ValueError, match=r"neither a \.bin"):
        voice_files(model_folder, tmp_path, [VoiceFile(name="wav", path="voice.wav")])


def test_default_is_listed_or_speecht5_s_built_in_speaker_or_the_first_voice(tmp_path):
    files = {"zed": tmp_path / "z.bin", "amy": tmp_path / "a.bin"}
    assert voice_names(files, [], "speecht5") == {"zed": "zed", "amy": "amy", "default": None}
    assert voice_names(files, [], "kokoro")["default"] == "amy"
    assert voice_names({**files, "default": tmp_path / "d.bin"}, [], "kokoro")["default"] == "default"
    with pytest.raises(ValueError, match="no built-in speaker: list at least one voice"):
        voice_names({}, [], "kokoro")


def test_aliases_name_voices_and_must_name_known_ones(tmp_path):
    aliases = [VoiceAlias(name="alloy", voice="default"), VoiceAlias(name="echo", voice="amy")]
    names = voice_names({"amy": tmp_path / "a.bin"}, aliases, "speecht5")
    assert names == {"amy": "amy", "default": None, "alloy": None, "echo": "amy"}
    with pytest.raises(ValueError, match="names the voice 'nobody', which is not listed; voices: amy, default"):
        voice_names({"amy": tmp_path / "a.bin"}, [VoiceAlias(name="alloy", voice="nobody")], "speecht5")
    with pytest.raises(ValueError, match="is the name of a voice already"):
        voice_names({"amy": tmp_path / "a.bin"}, [VoiceAlias(name="amy", voice="default")], "speecht5")


def test_ovms_options_and_ovserve_s_own():
    options = T2sCalculatorOptions(models_path="./", plugin_config='{"NUM_STREAMS": "1"}', speed_min=0.5,
                                   speed_max=2.0, voices=[VoiceFile(name="a", path="a.bin")])
    assert options.plugin_config == {"NUM_STREAMS": "1"} and options.chosen_device == "CPU"
    assert (options.max_input_chars, options.max_queued_requests) == (4096, 4)
    assert TtsCalculatorOptions(models_path="./", device="CPU").chosen_device == "CPU"
    for bad in ({"speed_min": 2.0, "speed_max": 1.0}, {"speed_min": 0.1}, {"speed_max": 5.0},
                {"target_device": "CPU", "device": "GPU"}, {"plugin_config": "{nope"}):
        with pytest.raises(ValidationError):
            T2sCalculatorOptions(models_path="./", **bad)


def test_an_unknown_voice_is_a_400_that_lists_the_known_ones():
    from ovserve.calculators.speech.model import TtsModel

    model = TtsModel(engine=None, voices={"default": None, "alloy": None, "other": "other"})  # type: ignore[arg-type]
    assert model.voice("alloy") is None and model.voice("other") == "other"
    with pytest.raises(RequestError) as refused:
        model.voice("nova")
    assert refused.value.param == "voice" and "alloy, default, other" in refused.value.message
