"""Sampling settings become the engine's GenerationConfig; frames survive being split anywhere."""

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
    messages = [("add", 1, b"\x01\x02", SamplingParams(max_new_tokens=3)), ("abort", 1)]
    wire = b"".join(encode_frame(m) for m in messages)
    for cut in range(len(wire) + 1):
        buffer = bytearray(wire[:cut])
        decoded = decode_frames(buffer)
        buffer += wire[cut:]
        decoded += decode_frames(buffer)
        assert decoded == messages and not buffer
