"""The stateful pipeline over HTTP (``ovserve serve --pipeline-type LM``, OVMS's ``pipeline_type: LM`` and ``VLM``):
the LLM graph unchanged on an engine that runs one request at a time, with the official client; what that engine
cannot do is a 400 naming the field. On this CPU-only machine; NPU, which OVMS serves this way, is not here."""

import json
import time

import httpx
import openai
import pytest

from tests.conftest import MODEL_NAME, start_server
from tests.server.streams import wait_for
from tests.server.test_bad_input import assert_openai_error
from tests.server.test_vision import OVMS_VLM_GRAPH, chat, data_url, png
from tests.tiny_models import LLAVA

pytestmark = pytest.mark.slow

HELLO = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def one_at_a_time(default_model, tmp_path_factory):
    server = start_server(["--model", str(default_model), "--model-name", MODEL_NAME, "--pipeline-type", "LM"],
                          tmp_path_factory.mktemp("stateful"))
    yield server
    server.stop()


def test_the_server_says_which_pipeline_serves_the_model(one_at_a_time):
    assert "the stateful pipeline (OpenVINO GenAI's LLMPipeline), one request at a time, up to 16 held" in \
        one_at_a_time.output()


def test_a_unary_answer_and_its_stream_agree(one_at_a_time):
    client = one_at_a_time.openai()
    answer = client.chat.completions.create(model=MODEL_NAME, messages=HELLO, max_tokens=12, temperature=0)
    choice = answer.choices[0]
    assert choice.message.content and choice.finish_reason in ("stop", "length")
    assert answer.usage.prompt_tokens > 0 and 0 < answer.usage.completion_tokens <= 12
    chunks = list(client.chat.completions.create(model=MODEL_NAME, messages=HELLO, max_tokens=12, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == choice.message.content
    assert sum(1 for chunk in chunks if chunk.choices and chunk.choices[0].delta.content) > 1  # token by token
    assert chunks[-1].usage.completion_tokens == answer.usage.completion_tokens
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == choice.finish_reason


def test_max_tokens_ends_the_answer_with_length(one_at_a_time):
    client = one_at_a_time.openai()
    answer = client.completions.create(model=MODEL_NAME, prompt="Once upon a time", max_tokens=5,
                                       extra_body={"ignore_eos": True})
    assert answer.choices[0].finish_reason == "length" and answer.usage.completion_tokens == 5


def test_a_stop_string_cuts_the_answer_where_it_begins(one_at_a_time):
    client = one_at_a_time.openai()
    full = client.completions.create(model=MODEL_NAME, prompt="The capital of France is", max_tokens=8,
                                     temperature=0, extra_body={"ignore_eos": True}).choices[0].text
    stop = full[2:5]
    assert len(stop) == 3, full
    for stream in (False, True):
        client = one_at_a_time.openai(strict=not stream)  # a streamed completion's chunks have no finish_reason
        answer = client.completions.create(model=MODEL_NAME, prompt="The capital of France is", max_tokens=8,
                                           temperature=0, stop=[stop], stream=stream,
                                           extra_body={"ignore_eos": True})
        chunks = list(answer) if stream else [answer]
        text = "".join(chunk.choices[0].text for chunk in chunks if chunk.choices)
        assert text == full[:full.index(stop)]
        assert chunks[-1].choices[0].finish_reason == "stop"


def test_structured_output_is_enforced(one_at_a_time):
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"],
              "additionalProperties": False}
    answer = one_at_a_time.openai().chat.completions.create(
        model=MODEL_NAME, messages=HELLO, max_tokens=40, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema}})
    if answer.choices[0].finish_reason == "stop":
        assert set(json.loads(answer.choices[0].message.content)) == {"city"}


def test_a_client_that_goes_away_frees_the_engine_for_the_next(one_at_a_time):
    body = {"model": MODEL_NAME, "messages": HELLO, "stream": True, "max_tokens": 4000, "ignore_eos": True}
    with httpx.stream("POST", f"{one_at_a_time.base_url}/v3/chat/completions", json=body, timeout=60) as response:
        lines = response.iter_lines()  # kept: a dropped iterator closes the response
        received = [line for _, line in zip(range(8), lines, strict=False)]
        assert sum(line.startswith("data: ") for line in received) >= 3, received
        assert one_at_a_time.metric("ovserve_engine_requests_running") == 1
    assert wait_for(lambda: one_at_a_time.metric("ovserve_engine_requests_running") == 0), \
        "the engine kept generating for a client that had gone"
    started = time.monotonic()
    answer = one_at_a_time.openai().chat.completions.create(model=MODEL_NAME, messages=HELLO, max_tokens=3)
    assert answer.usage.completion_tokens <= 3 and time.monotonic() - started < 30


@pytest.mark.parametrize(("path", "fields", "param", "words"), [
    ("chat/completions", {"n": 2}, "n", "'n' is 2; one answer per request"),
    ("chat/completions", {"logprobs": True}, "logprobs", "one score for the whole answer"),
    ("chat/completions", {"logprobs": True, "top_logprobs": 2}, "logprobs", "one score for the whole answer"),
    ("completions", {"best_of": 2}, "best_of", "'best_of' is 2; one answer per request"),
    ("completions", {"logprobs": 0}, "logprobs", "one score for the whole answer"),
    ("completions", {"prompt": ["a", "b"]}, "prompt", "'prompt' holds 2 prompts; one per request"),
    ("completions", {"num_assistant_tokens": 3}, "num_assistant_tokens", "prompt lookup"),
])
def test_what_the_stateful_pipeline_cannot_do_is_refused_naming_the_field(one_at_a_time, path, fields, param, words):
    body = {"model": MODEL_NAME, "max_tokens": 4, **fields}
    body.setdefault("messages" if path.startswith("chat") else "prompt", HELLO if path.startswith("chat") else "Hi")
    response = httpx.post(f"{one_at_a_time.base_url}/v3/{path}", json=body, timeout=60)
    assert_openai_error(response, 400, param, words)
    assert one_at_a_time.openai().completions.create(model=MODEL_NAME, prompt="Hi", max_tokens=2).choices


def test_echo_alone_never_reaches_the_engine_and_is_served(one_at_a_time):
    answer = one_at_a_time.openai().completions.create(model=MODEL_NAME, prompt="Hello there", max_tokens=0,
                                                       echo=True)
    assert answer.choices[0].text == "Hello there"


#: OVMS's text generation graph with pipeline_type and device to fill in.
OVMS_LM_GRAPH = OVMS_VLM_GRAPH.replace('device: "CPU"', "device: DEVICE").replace('models_path: "./"',
                                                                                  "models_path: MODEL")


def test_ovms_lm_and_vlm_graphs_are_served_one_request_at_a_time_on_a_device_ovms_names(default_model, tmp_path):
    """HETERO:CPU and AUTO resolve to CPU here: plumbing only."""
    graphs = {"smollm2-lm": OVMS_LM_GRAPH.replace("PIPELINE", "LM").replace("DEVICE", '"HETERO:CPU"')
              .replace("MODEL", json.dumps(str(default_model))),
              "llava-vlm": OVMS_LM_GRAPH.replace("PIPELINE", "VLM").replace("DEVICE", '"AUTO"')
              .replace("MODEL", json.dumps(str(LLAVA)))}
    for name, graph in graphs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "graph.pbtxt").write_text(graph)
    (tmp_path / "config.json").write_text(json.dumps({"model_config_list": [], "mediapipe_config_list": [
        {"name": name, "base_path": name} for name in graphs]}))
    server = start_server(["--config_path", str(tmp_path / "config.json")], tmp_path)
    try:
        client = openai.OpenAI(base_url=f"{server.base_url}/v3", api_key="unused", max_retries=0)
        answer = client.chat.completions.create(model="smollm2-lm", messages=HELLO, max_tokens=3,
                                                extra_body={"ignore_eos": True})
        assert answer.usage.completion_tokens == 3 and answer.choices[0].finish_reason == "length"
        seen = client.chat.completions.create(model="llava-vlm", messages=chat(data_url(png())), max_tokens=3)
        assert seen.usage.completion_tokens == 3 and seen.usage.prompt_tokens > 0
        two = httpx.post(f"{server.base_url}/v3/chat/completions", timeout=60, json={
            "model": "llava-vlm", "messages": chat(data_url(png())), "max_tokens": 3, "n": 2})
        assert_openai_error(two, 400, "n", "one answer per request")
        assert "(OpenVINO GenAI's LLMPipeline), one request at a time" in server.output()
        assert "(OpenVINO GenAI's VLMPipeline), one request at a time" in server.output()
    finally:
        server.stop()


def test_npu_static_shape_settings_fail_the_load_on_cpu_saying_why(default_model, tmp_path):
    with pytest.raises(RuntimeError, match=r"plugin_config sets MAX_PROMPT_LEN, NPU's static-shape settings, for "
                                           r"device 'CPU'"):
        start_server(["--model", str(default_model), "--pipeline-type", "LM", "--plugin-config",
                      '{"MAX_PROMPT_LEN": 1024}'], tmp_path)


def test_the_messages_and_responses_apis_and_tool_calls_run_on_it_unchanged(one_at_a_time):
    base = one_at_a_time.base_url
    message = httpx.post(f"{base}/v1/messages", timeout=60, json={
        "model": MODEL_NAME, "max_tokens": 4, "messages": HELLO}).json()
    assert message["type"] == "message" and message["usage"]["output_tokens"] <= 4
    response = one_at_a_time.openai().responses.create(model=MODEL_NAME, input="Hi", max_output_tokens=16)
    assert response.output and response.usage.output_tokens <= 16
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    answer = one_at_a_time.openai().chat.completions.create(
        model=MODEL_NAME, messages=HELLO, max_tokens=30, tools=[weather], tool_choice="required")
    assert answer.choices[0].message.tool_calls[0].function.name == "get_weather"
