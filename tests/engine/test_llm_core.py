"""The text generation core: device checks, a failed step, queue times, tokens past max_tokens, finishing once."""

import pytest

from ovserve.engine.llm_core import check_device


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

    from ovserve.engine.llm_core import GenerateJob, LLMCore
    from ovserve.engine.messages import Step, Submit
    from ovserve.engine.protocol import SamplingParams, decode_frames, encode_frame
    from ovserve.engine.worker import EngineLoop

    server, engine = socket.socketpair()
    core = LLMCore(FailingPipeline())
    loop = EngineLoop(core, engine)
    server.sendall(encode_frame(Submit(7, GenerateJob((1).to_bytes(8, "little"), SamplingParams(max_new_tokens=2)))))
    loop.run()  # returns: a broken pipeline is not stepped again
    buffer = bytearray(server.recv(1 << 16))
    (step,) = decode_frames(buffer)
    assert isinstance(step, Step) and step.outputs == [(7, (), 'error: engine step failed: Unsupported type "foo"')]
    assert core.failed == 'Unsupported type "foo"'


class CountingPipeline(FailingPipeline):
    """Says how many requests it holds and how many its last step scheduled, as OpenVINO GenAI's does."""

    def __init__(self):
        self.requests, self.scheduled = 0, 0

    def get_metrics(self):
        class Metrics:
            requests, scheduled_requests, cache_usage = self.requests, self.scheduled, 0.0

        return Metrics


def test_queue_time_is_taken_first_come_first_served_from_the_engine_s_counts():

    from ovserve.engine.llm_core import LLMCore

    pipeline = CountingPipeline()
    loop = LLMCore(pipeline)
    loop.unscheduled = {1: 10.0, 2: 10.5, 3: 11.0}
    pipeline.requests, pipeline.scheduled = 3, 1  # two still wait: the oldest began
    loop.after_step(step_started=12.0)
    assert loop.queued == [2.0] and list(loop.unscheduled) == [2, 3]
    pipeline.scheduled = 3
    loop.after_step(step_started=13.0)
    assert loop.queued == [2.0, 2.5, 2.0] and not loop.unscheduled


class OvershootingPipeline(CountingPipeline):
    """Gives a request more tokens in one step than it may have, as prompt lookup in OpenVINO GenAI 2026.4 can."""

    class Handle:
        def __init__(self):
            import openvino_genai

            self.status, self.unread, self.cancelled = openvino_genai.GenerationStatus.RUNNING, True, False

        def can_read(self):
            return self.unread

        def read(self):
            class Output:
                generated_ids, generated_log_probs, finish_reason = [5, 6, 7, 8, 9], [-0.1] * 5, None

            self.unread = False
            return {0: Output}

        def get_status(self):
            return self.status

        def cancel(self):
            self.cancelled = True

    def __init__(self):
        super().__init__()
        self.handle = self.Handle()

    def add_request(self, request_id, ids, config):
        return self.handle

    def step(self):
        self.requests = self.scheduled = 1


def test_tokens_past_max_tokens_are_cut_and_the_request_ends_there():

    from ovserve.engine.llm_core import GenerateJob, LLMCore
    from ovserve.engine.protocol import SamplingParams

    pipeline = OvershootingPipeline()
    loop = LLMCore(pipeline)
    loop.add(3, GenerateJob((1).to_bytes(8, "little"), SamplingParams(max_new_tokens=3, logprobs=True)))
    pipeline.step()
    loop.collect()
    assert loop.outputs == [(3, ([5, 6, 7], [-0.1] * 3), "length")]
    assert pipeline.handle.cancelled and loop.live == 0  # the engine is told to let the rest go


def test_a_request_the_engine_says_finished_while_its_status_still_runs_ends_once():

    import openvino_genai

    from ovserve.engine.llm_core import GenerateJob, LLMCore
    from ovserve.engine.protocol import SamplingParams

    class FinishedOutput:
        generated_ids, generated_log_probs = [5, 6], [-0.1, -0.2]
        finish_reason = openvino_genai.GenerationFinishReason.STOP

    pipeline = OvershootingPipeline()

    def read():  # finished, though get_status still says RUNNING
        pipeline.handle.unread = False
        return {0: FinishedOutput}

    pipeline.handle.read = read
    loop = LLMCore(pipeline)
    loop.add(3, GenerateJob((1).to_bytes(8, "little"), SamplingParams(max_new_tokens=10)))
    pipeline.step()
    loop.collect()
    pipeline.handle.unread = True
    loop.collect()  # read again, as the next step would
    assert loop.outputs == [(3, [5, 6], "stop")] and loop.completed == 1 and loop.live == 0
