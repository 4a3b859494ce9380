"""The engine process seen from the server: load errors, streaming, aborts (real model)."""

import asyncio
import os
from pathlib import Path

import numpy as np
import pytest

from ovserve.engine.client import EngineClient
from ovserve.engine.process import EngineError
from ovserve.engine.protocol import SamplingParams
from ovserve.engine.settings import EngineSettings, find_model_files
from ovserve.errors import ModelNotReadyError

pytestmark = pytest.mark.slow

PROMPT = np.array([1, 9690, 198, 2683, 359, 253, 5356, 2, 198, 1, 4093, 198, 504, 2, 198, 1, 520, 9531, 198])


@pytest.mark.parametrize("in_process", [False, True])
async def test_a_device_that_is_not_there_fails_the_load_naming_the_devices_there_are(default_model, in_process):
    client = EngineClient(EngineSettings(find_model_files(default_model), device="NPU"), in_process=in_process)
    with pytest.raises(EngineError, match="device 'NPU' is not available: NPU not found; this machine has CPU"):
        await client.start()
    assert not client.ready


@pytest.mark.parametrize("in_process", [False, True])
async def test_tokens_stream_and_an_abort_stops_the_engine_working_on_it(default_model, in_process):
    """The same, whether the engine runs in a process of its own or in a thread of this one."""
    client = EngineClient(EngineSettings(find_model_files(default_model)), in_process=in_process)
    info = await client.start()
    assert (info.pid == os.getpid()) == in_process
    try:
        finished = client.submit(PROMPT, SamplingParams(max_new_tokens=6, temperature=0, ignore_eos=True))
        tokens = [t async for delta in finished for t in delta.token_ids]
        assert len(tokens) == 6 and finished.finish == "length"

        endless = client.submit(PROMPT, SamplingParams(max_new_tokens=5000, temperature=0, ignore_eos=True))
        async for _ in endless:
            break
        assert client.engine_running == 1
        endless.abort()
        assert endless.finish is None and endless.done
        for _ in range(100):
            if client.engine_running == 0:
                break
            await asyncio.sleep(0.05)
        assert client.engine_running == 0 and client.in_flight == 0
    finally:
        await client.stop()
    assert not client.ready
    with pytest.raises(ModelNotReadyError, match="not ready"):
        client.submit(PROMPT, SamplingParams(max_new_tokens=1))


def cpu_seconds(pid: int) -> float:
    """The user and system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def test_requests_aborted_while_another_runs_are_let_go_and_the_engine_goes_idle(default_model):
    client = EngineClient(EngineSettings(find_model_files(default_model)))
    await client.start()
    try:
        running = client.submit(PROMPT, SamplingParams(max_new_tokens=300, temperature=0, ignore_eos=True))
        aborted = [client.submit(PROMPT, SamplingParams(max_new_tokens=5000, temperature=0, ignore_eos=True))
                   for _ in range(3)]
        for request in aborted:
            async for _ in request:  # each has begun generating
                break
        for request in aborted:
            request.abort()
        steps_at_abort = client.engine_steps
        tokens = []
        async for delta in running:
            tokens.extend(delta.token_ids)
            if client.engine_handles == 1:
                break
            # the aborts reach the engine a step or two late, and it lets them go within two steps more
            assert client.engine_steps < steps_at_abort + 20, "aborted requests still held"
        assert not running.done  # let go while the other one still runs
        tokens += [t async for delta in running for t in delta.token_ids]
        assert running.finish == "length"

        for _ in range(100):  # the engine's last report comes after its last step
            if client.engine_handles == 0:
                break
            await asyncio.sleep(0.05)
        steps, cpu = client.engine_steps, cpu_seconds(client.info.pid)
        await asyncio.sleep(1.0)
        assert client.engine_handles == 0 and client.engine_steps == steps
        assert cpu_seconds(client.info.pid) - cpu < 0.1  # idle, not stepping with nothing to do
    finally:
        await client.stop()
