"""speak(): sentences in, each one's speech out in order, through a real speech engine (the tiny SpeechT5, in an
engine thread). The first sentence is spoken before the next is even known, which is what lets a voice graph speak
while its LLM still writes; at most two sentences wait in the engine; leaving early drops the rest."""

import asyncio

import pytest

from ovserve.calculators.speech.model import TtsModel
from ovserve.calculators.speech.synthesize import speak
from ovserve.engine.call_client import CallEngine
from ovserve.engine.tts_kind import SpeechSpec
from tests.tiny_models import SPEECHT5, SPEECHT5_RATE, SPEECHT5_SPEAKER, speecht5_samples


@pytest.fixture
async def model():
    engine = CallEngine(SpeechSpec(str(SPEECHT5), voices=(("default", str(SPEECHT5_SPEAKER)),)), in_process=True,
                        step_timeout=30)
    await engine.start()
    yield TtsModel(engine, {"default": "default"})
    await engine.stop()


async def test_each_sentence_is_spoken_in_order(model):
    sentences = ["Hello there.", "How are you?", "Fine."]
    speeches = [speech async for speech in speak(model, sentences, "default")]
    assert [speech.text for speech in speeches] == sentences
    assert [speech.samples.size for speech in speeches] == [speecht5_samples(text) for text in sentences]
    assert {speech.sample_rate for speech in speeches} == {SPEECHT5_RATE}
    assert [speech.input_tokens for speech in speeches] == [len(text) + 2 for text in sentences]


async def test_the_first_sentence_is_spoken_before_the_next_is_known(model):
    heard = asyncio.Event()

    async def writer():
        yield "The first sentence."
        await asyncio.wait_for(heard.wait(), 30)  # the next sentence exists only once the first was heard
        yield "The second."

    said = []
    async for speech in speak(model, writer(), None):
        said.append(speech.text)
        heard.set()
    assert said == ["The first sentence.", "The second."]


async def test_at_most_two_sentences_wait_in_the_engine(model):
    seen_running = []

    async def counting():
        for index in range(6):
            seen_running.append(model.engine.in_flight)
            yield f"Sentence number {index}."

    speeches = [speech async for speech in speak(model, counting(), None)]
    assert len(speeches) == 6
    assert max(seen_running) <= 2


async def test_leaving_early_drops_the_sentences_still_queued(model):
    stream = speak(model, [f"Sentence {index}." for index in range(10)], None)
    first = await anext(stream)
    assert first.text == "Sentence 0."
    await stream.aclose()
    for _ in range(100):  # the engine lets the dropped ones go
        if not model.engine.in_flight:
            break
        await asyncio.sleep(0.05)
    assert not model.engine.in_flight
    assert [speech.text async for speech in speak(model, ["Again."], None)] == ["Again."]
