"""The speaking node alone (``run_calculator``) on the tiny SpeechT5 in an engine thread: text packets in, a packet
of speech per sentence out, in order, in the voice its options name."""

import asyncio

import numpy as np
import pytest

from ovserve.calculators.speech.model import TtsModel
from ovserve.calculators.speech.speak import SpeakCalculator
from ovserve.engine.call_client import CallEngine
from ovserve.engine.tts_kind import SpeechSpec
from ovserve.errors import RequestError
from ovserve.framework.errors import CalculatorError
from ovserve.testing import run_calculator
from tests.tiny_models import SPEECHT5, SPEECHT5_OTHER_SPEAKER, SPEECHT5_RATE, speecht5_samples


@pytest.fixture
async def model():
    engine = CallEngine(SpeechSpec(str(SPEECHT5), voices=(("other", str(SPEECHT5_OTHER_SPEAKER)),)),
                        in_process=True, step_timeout=30)
    await engine.start()
    yield TtsModel(engine, {"default": None, "other": "other"})
    await engine.stop()


async def test_each_sentence_of_each_packet_is_spoken_in_order(model):
    texts = ["Hello there. How are you?", "Fine."]
    outputs = await run_calculator(SpeakCalculator, {"TEXT": texts}, {"voice": "other"}, {"SPEECH": model})
    speeches = outputs["AUDIO"]
    assert [speech.text for speech in speeches] == ["Hello there.", "How are you?", "Fine."]
    assert [speech.samples.size for speech in speeches] == [speecht5_samples(s.text) for s in speeches]
    assert all(speech.sample_rate == SPEECHT5_RATE and speech.samples.dtype == np.float32 for speech in speeches)
    plain = await run_calculator(SpeakCalculator, {"TEXT": ["Fine."]}, None, {"SPEECH": model})
    assert not np.array_equal(plain["AUDIO"][0].samples, speeches[2].samples)  # the default voice is another


async def test_an_unknown_voice_fails_the_run_listing_the_known_ones(model):
    with pytest.raises(CalculatorError) as failed:
        await asyncio.wait_for(run_calculator(SpeakCalculator, {"TEXT": ["Hi."]}, {"voice": "nova"},
                                              {"SPEECH": model}), 30)
    assert isinstance(failed.value.cause, RequestError) and "default, other" in failed.value.cause.message
