"""A one-call kind behind the engine boundary: results, partial results, the bounded queue, aborts, failures, restart.

The kind is :mod:`tests.engine.echo_kind`; it runs both in a thread (``in_process``) and in an engine process, over
the same messages.
"""

import asyncio
import os
import signal

import pytest

from ovserve.engine.call_client import CallEngine
from ovserve.engine.process import EngineBusyError, EngineError
from ovserve.errors import ModelNotReadyError
from tests.engine.echo_kind import EchoJob, EchoSpec


@pytest.fixture(params=[True, False], ids=["in_process", "process"])
async def echo(request):
    engine = CallEngine(EchoSpec(), in_process=request.param, step_timeout=30)
    await engine.start()
    yield engine
    await engine.stop()


async def test_a_job_returns_its_result_and_streams_its_partial_results(echo):
    assert await echo.call(EchoJob("hello tiny world")) == "hello tiny world"
    partials = [payload async for payload in echo.submit(EchoJob("one two three")).partials()]
    assert partials == ["one", "two", "three", "one two three"]


async def test_a_failing_job_fails_alone_and_the_engine_keeps_serving(echo):
    with pytest.raises(EngineError, match="cannot echo 'bad'"):
        await echo.call(EchoJob("bad", fail=True))
    assert await echo.call(EchoJob("still here")) == "still here"


async def test_jobs_past_the_bound_are_refused_at_once_with_503(echo):
    held = [echo.submit(EchoJob("slow " * 50, delay=0.05)) for _ in range(4)]
    with pytest.raises(EngineBusyError) as refused:
        echo.submit(EchoJob("one too many"))
    assert refused.value.status == 503 and refused.value.code == "engine_queue_full"
    for request in held:
        request.abort()
    assert await echo.call(EchoJob("room again")) == "room again"


async def test_an_aborted_running_job_is_cancelled_and_a_queued_one_never_runs(echo):
    running = echo.submit(EchoJob("word " * 200, delay=0.02))
    queued = echo.submit(EchoJob("never said", delay=0.02))
    partial = running.partials()
    assert await anext(partial) == "word"
    queued.abort()
    await partial.aclose()  # the caller went away: aborts the job
    started = asyncio.get_running_loop().time()
    assert await echo.call(EchoJob("next")) == "next"
    # the 200-word job stopped at its next word: the next job did not wait for the rest (4 s)
    assert asyncio.get_running_loop().time() - started < 2.0
    assert echo.engine_handles == 0


async def test_a_kind_that_cannot_load_says_why():
    engine = CallEngine(EchoSpec(fail_to_load=True), in_process=True)
    with pytest.raises(EngineError, match="echo cannot be loaded: FileNotFoundError: no echo model here"):
        await engine.start()


async def test_a_killed_engine_fails_its_jobs_and_is_restarted():
    engine = CallEngine(EchoSpec(), step_timeout=30)
    await engine.start()
    try:
        request = engine.submit(EchoJob("word " * 100, delay=0.05))
        os.kill(engine._process.pid, signal.SIGKILL)
        with pytest.raises(ModelNotReadyError):
            await request.result()
        for _ in range(300):
            if engine.ready:
                break
            await asyncio.sleep(0.1)
        assert engine.starts == 2 and await engine.call(EchoJob("back again")) == "back again"
    finally:
        await engine.stop()


async def test_a_silent_call_past_its_timeout_stops_the_heartbeat_and_the_watchdog_restarts_the_engine(monkeypatch):
    monkeypatch.setenv("OVSERVE_CALL_TIMEOUT_S", "1")
    engine = CallEngine(EchoSpec(), step_timeout=2)
    await engine.start()
    try:
        with pytest.raises(ModelNotReadyError, match="stopped responding"):
            await engine.call(EchoJob("stuck", hang=30))
        assert engine.hangs == 1
    finally:
        await engine.stop()


async def test_a_long_quiet_call_whose_callback_asks_whether_to_stop_is_left_to_finish(monkeypatch):
    monkeypatch.setenv("OVSERVE_CALL_TIMEOUT_S", "1")
    engine = CallEngine(EchoSpec(), step_timeout=2)
    await engine.start()
    try:
        text = " ".join(f"w{i}" for i in range(40))
        assert await engine.call(EchoJob(text, delay=0.1, quiet=True)) == text  # 4 s, past both timeouts
        assert engine.hangs == 0 and engine.starts == 1
    finally:
        await engine.stop()
