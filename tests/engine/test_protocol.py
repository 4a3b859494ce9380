"""Sampling settings become the engine's GenerationConfig; frames survive being split anywhere."""

import pytest

from ovserve.engine.llm_core import GenerateJob
from ovserve.engine.messages import Abort, Step, Submit
from ovserve.engine.protocol import SamplingParams, decode_frames, encode_frame


def test_greedy_when_the_temperature_is_zero():
    config = SamplingParams(max_new_tokens=5, temperature=0, top_p=0.5, top_k=3).to_generation_config()
    assert (config.max_new_tokens, config.do_sample) == (5, False)


def test_sampling_settings_reach_the_generation_config():
    config = SamplingParams(max_new_tokens=9, temperature=0.2, top_p=0.9, top_k=40, seed=11, stop=("END",),
                            ignore_eos=True).to_generation_config()
    assert config.do_sample and abs(config.temperature - 0.2) < 1e-6 and abs(config.top_p - 0.9) < 1e-6
    assert (config.top_k, config.rng_seed, config.stop_strings, config.ignore_eos) == (40, 11, {"END"}, True)


def test_any_integer_seed_is_accepted():
    assert SamplingParams(max_new_tokens=1, seed=-1).to_generation_config().rng_seed == 2**64 - 1


def test_frames_split_at_any_byte_decode_to_the_same_messages():
    messages = [Submit(1, GenerateJob(b"\x01\x02", SamplingParams(max_new_tokens=3))), Abort(1),
                Step([(1, [5], None)], 1, 3, stats={"cache_usage": 0.5})]
    wire = b"".join(encode_frame(m) for m in messages)
    for cut in range(len(wire) + 1):
        buffer = bytearray(wire[:cut])
        decoded = decode_frames(buffer)
        buffer += wire[cut:]
        decoded += decode_frames(buffer)
        assert decoded == messages and not buffer


def test_penalties_min_p_and_stop_token_ids_reach_the_generation_config():
    config = SamplingParams(max_new_tokens=9, temperature=0.7, min_p=0.05, repetition_penalty=1.2,
                            presence_penalty=0.5, frequency_penalty=-0.25, min_new_tokens=3,
                            stop_token_ids=(7, 8)).to_generation_config()
    assert abs(config.min_p - 0.05) < 1e-6 and abs(config.repetition_penalty - 1.2) < 1e-6
    assert (config.presence_penalty, config.frequency_penalty) == (0.5, -0.25)
    assert (config.min_new_tokens, config.stop_token_ids) == (3, {7, 8})
    config.validate()


def test_settings_the_engine_would_refuse_are_caught_before_they_reach_it():
    SamplingParams(max_new_tokens=5, temperature=0.5, min_p=0.5).check()
    with pytest.raises(ValueError, match=r"min_p must be in \[0.0, 1.0\), but got 1"):
        SamplingParams(max_new_tokens=5, temperature=0.5, min_p=1.0).check()
