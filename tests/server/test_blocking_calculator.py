"""A user's calculator that blocks, served from a config.json: in a thread pool it stalls nobody."""

import json
import threading
import time

import httpx
import pytest

from tests.conftest import start_server

pytestmark = pytest.mark.slow

SLOW_CALCULATOR = '''
import json
import time

from ovserve import Calculator, CalculatorContext, Input, Output
from ovserve.payloads import HttpRequestPayload, HttpResponsePayload


class SlowLookup(Calculator):
    """Blocks for a second, as a database call or a big file read would."""

    REQUEST = Input(HttpRequestPayload)
    RESPONSE = Output(HttpResponsePayload)

    def process(self, ctx: CalculatorContext) -> None:
        time.sleep(1.0)
        ctx.send(self.RESPONSE, HttpResponsePayload(json.dumps({"looked_up": ctx.value(self.REQUEST).json}).encode()))
'''

GRAPH = '''
input_stream: "HTTP_REQUEST_PAYLOAD:in"
output_stream: "HTTP_RESPONSE_PAYLOAD:out"
{executor}
node {{ calculator: "SlowLookup" input_stream: "REQUEST:in" output_stream: "RESPONSE:out" {node_executor} }}
'''


def serve_slow_graph(tmp_path, in_threads: bool):
    (tmp_path / "calcs").mkdir()
    (tmp_path / "calcs" / "slow.py").write_text(SLOW_CALCULATOR)
    (tmp_path / "slow").mkdir()
    executor = 'executor { name: "io" type: "ThreadPoolExecutor" options { ' \
               '[mediapipe.ThreadPoolExecutorOptions.ext] { num_threads: 4 } } }'
    (tmp_path / "slow" / "graph.pbtxt").write_text(GRAPH.format(
        executor=executor if in_threads else "", node_executor='executor: "io"' if in_threads else ""))
    (tmp_path / "config.json").write_text(json.dumps({
        "mediapipe_config_list": [{"name": "slow", "base_path": "slow"}], "calculator_paths": ["calcs"]}))
    return start_server(["--config", str(tmp_path / "config.json")], tmp_path)


def three_lookups_and_health_checks(server) -> tuple[float, float, list[int]]:
    """(how long three concurrent lookups took, the slowest health check meanwhile, their statuses)."""
    statuses: list[int] = []

    def lookup(i: int) -> None:
        response = httpx.post(f"{server.base_url}/v3/completions", json={"model": "slow", "prompt": str(i)},
                              timeout=30)
        statuses.append(response.status_code)

    threads = [threading.Thread(target=lookup, args=(i,)) for i in range(3)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    slowest = 0.0
    while any(thread.is_alive() for thread in threads):
        before = time.monotonic()
        assert httpx.get(f"{server.base_url}/v2/health/live", timeout=30).status_code == 200
        slowest = max(slowest, time.monotonic() - before)
        time.sleep(0.05)
    return time.monotonic() - started, slowest, statuses


def test_a_blocking_calculator_on_its_executor_stalls_no_other_request(tmp_path):
    server = serve_slow_graph(tmp_path, in_threads=True)
    try:
        wall, slowest_health, statuses = three_lookups_and_health_checks(server)
    finally:
        server.stop()
    assert statuses == [200, 200, 200]
    assert slowest_health < 0.5 and wall < 2.5  # side by side in the pool, the loop free meanwhile


def test_the_same_calculator_on_the_event_loop_stalls_everything(tmp_path):
    server = serve_slow_graph(tmp_path, in_threads=False)
    try:
        wall, slowest_health, statuses = three_lookups_and_health_checks(server)
    finally:
        server.stop()
    assert statuses == [200, 200, 200]
    assert slowest_health > 0.9 and wall > 2.9  # one after the other, and health waited behind them
