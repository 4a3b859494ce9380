"""Device checks and the frame format between the processes."""

import pytest

from ovserve.engine.worker import check_device


@pytest.mark.parametrize("device", ["CPU", "AUTO", "AUTO:CPU", "HETERO:CPU", "GPU.0"])
def test_devices_that_exist_pass(device):
    check_device(device, ["CPU", "GPU.0"])


@pytest.mark.parametrize(("device", "missing"), [("GPU", "GPU"), ("NPU", "NPU"), ("HETERO:GPU,CPU", "GPU")])
def test_a_missing_device_names_the_devices_there_are(device, missing):
    with pytest.raises(ValueError, match=rf"device '{device}' is not available: {missing} not found; this machine has CPU"):
        check_device(device, ["CPU"])



class FailingPipeline:
    """Takes requests; its first step fails, as OpenVINO GenAI's does on a grammar it cannot compile."""

    def add_request(self, request_id, ids, config):
        return object()

    def has_non_finished_requests(self):
        return True

    def step(self):
        raise RuntimeError("Check 'x' failed at some/file.cpp:1:\nUnsupported type \"foo\"")

    def get_metrics(self):
        raise RuntimeError("no metrics")


def test_a_failed_step_fails_the_requests_in_flight_and_ends_the_loop():
    import socket

    from ovserve.engine.protocol import SamplingParams, decode_frames, encode_frame
    from ovserve.engine.worker import StepLoop

    server, engine = socket.socketpair()
    loop = StepLoop(FailingPipeline(), engine)
    server.sendall(encode_frame(("add", 7, (1).to_bytes(8, "little"), SamplingParams(max_new_tokens=2))))
    loop.run()  # returns: a broken pipeline is not stepped again
    buffer = bytearray(server.recv(1 << 16))
    (step,) = decode_frames(buffer)
    assert step[0] == "step" and step[1] == [(7, (), 'error: engine step failed: Unsupported type "foo"')]
    assert loop.failed == 'Unsupported type "foo"'
