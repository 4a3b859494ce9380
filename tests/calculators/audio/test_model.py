"""What the speech node checks a request against: the model's languages and tasks (from its generation_config.json),
its word timestamps, and how many requests it holds; and the options OVMS's graphs give it."""

import json

import pytest

from ovserve.calculators.audio.calculator import SpeechToTextCalculator
from ovserve.calculators.audio.decode import AudioLimits
from ovserve.calculators.audio.model import S2tCalculatorOptions, SpeechModel, read_languages
from ovserve.calculators.audio.schema import TranscriptionForm, TranslationForm
from ovserve.engine.call_client import CallEngine
from ovserve.engine.process import EngineBusyError
from ovserve.engine.whisper_kind import WhisperSpec
from ovserve.errors import RequestError
from tests.tiny_models import WHISPER


def speech_model(languages=frozenset({"en", "de"}), translates=True, words=False) -> SpeechModel:
    return SpeechModel(CallEngine(WhisperSpec(str(WHISPER))), languages, translates, words, AudioLimits(), 2)


def test_the_tiny_whispers_languages_and_an_english_only_model(tmp_path):
    languages, translates = read_languages(WHISPER)
    assert len(languages) == 99 and {"en", "de", "zh"} <= languages and translates
    (tmp_path / "generation_config.json").write_text(json.dumps({"is_multilingual": False}))
    assert read_languages(tmp_path) == (None, False)
    assert read_languages(tmp_path / "nothing-here") == (None, False)


def test_a_request_is_checked_against_what_the_model_does():
    check = SpeechToTextCalculator.check
    form = TranscriptionForm.from_fields({"model": "w", "language": "de", "prompt": "p", "temperature": "0.2"})
    assert check(form, speech_model(), False) == {"task": "transcribe", "language": "de", "prompt": "p",
                                                  "temperature": 0.2, "timestamps": False, "words": False,
                                                  "stream": False}
    with pytest.raises(RequestError, match="does not know language 'fr'") as caught:
        check(TranscriptionForm.from_fields({"model": "w", "language": "fr"}), speech_model(), False)
    assert caught.value.param == "language"
    with pytest.raises(RequestError, match="English-only"):
        check(form, speech_model(languages=None), False)
    english = TranscriptionForm.from_fields({"model": "w", "language": "en"})
    assert check(english, speech_model(languages=None), False)["language"] is None  # English-only: no language token
    with pytest.raises(RequestError, match="cannot translate"):
        check(TranslationForm.from_fields({"model": "w"}), speech_model(translates=False), True)
    verbose = TranscriptionForm.from_fields({"model": "w", "response_format": "verbose_json",
                                             "timestamp_granularities": ["word"]})
    with pytest.raises(RequestError, match="enable_word_timestamps") as caught:
        check(verbose, speech_model(), False)
    assert caught.value.param == "timestamp_granularities"
    timed = check(verbose, speech_model(words=True), False)
    assert (timed["timestamps"], timed["words"]) == (True, True)
    subtitles = TranscriptionForm.from_fields({"model": "w", "response_format": "srt"})
    assert check(subtitles, speech_model(), False)["timestamps"] is True


def test_the_model_holds_a_bounded_number_of_requests():
    model = speech_model()
    model.hold()
    model.hold()
    with pytest.raises(EngineBusyError) as caught:
        model.hold()
    assert caught.value.status == 503
    model.release()
    model.hold()


def test_ovms_options_with_the_older_device_name_and_a_plugin_config_string():
    options = S2tCalculatorOptions(models_path="./", device="GPU", plugin_config='{ "NUM_STREAMS": "1" }')
    assert (options.chosen_device, options.plugin_config) == ("GPU", {"NUM_STREAMS": "1"})
    assert S2tCalculatorOptions(models_path="./").chosen_device == "CPU"
    with pytest.raises(ValueError, match="disagree"):
        S2tCalculatorOptions(models_path="./", device="GPU", target_device="CPU")
    with pytest.raises(ValueError, match="JSON object"):
        S2tCalculatorOptions(models_path="./", plugin_config="[1]")
