"""An OVMS user's config.json + graph.pbtxt, written by hand, served unchanged."""

import json
import textwrap

import pytest

from tests.conftest import start_server

pytestmark = pytest.mark.slow

OVMS_GRAPH = """
    input_stream: "HTTP_REQUEST_PAYLOAD:input"
    output_stream: "HTTP_RESPONSE_PAYLOAD:output"

    node: {
      name: "LLMExecutor"
      calculator: "HttpLLMCalculator"
      input_stream: "LOOPBACK:loopback"
      input_stream: "HTTP_REQUEST_PAYLOAD:input"
      input_side_packet: "LLM_NODE_RESOURCES:llm"
      output_stream: "LOOPBACK:loopback"
      output_stream: "HTTP_RESPONSE_PAYLOAD:output"
      input_stream_info: {
        tag_index: 'LOOPBACK:0',
        back_edge: true
      }
      node_options: {
          [type.googleapis.com / mediapipe.LLMCalculatorOptions]: {
              models_path: "./SmolLM2-135M-Instruct.Q4_1.gguf",
              plugin_config: '{"KV_CACHE_PRECISION": "u8", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "32"}',
              enable_prefix_caching: true,
              cache_size: 1,
              generation_config_path: "greedy_generation_config.json"
          }
      }
      input_stream_handler {
        input_stream_handler: "SyncSetInputStreamHandler",
        options {
          [mediapipe.SyncSetInputStreamHandlerOptions.ext] {
            sync_set {
              tag_index: "LOOPBACK:0"
            }
          }
        }
      }
    }
"""


@pytest.fixture(scope="module")
def ovms_server(default_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("ovms")
    model_dir = root / "SmolLM2-135M-Instruct"
    model_dir.mkdir()
    (model_dir / default_model.name).symlink_to(default_model)
    (model_dir / "graph.pbtxt").write_text(textwrap.dedent(OVMS_GRAPH))
    (model_dir / "greedy_generation_config.json").write_text('{"do_sample": false, "temperature": 0.0}')
    (root / "config.json").write_text(json.dumps({
        "model_config_list": [],
        "mediapipe_config_list": [{"name": "HuggingFaceTB/SmolLM2-135M-Instruct", "base_path": "SmolLM2-135M-Instruct"}],
    }))
    server = start_server(["--config_path", str(root / "config.json")], root)
    yield server
    server.stop()


def test_an_ovms_config_and_graph_serve_the_model(ovms_server):
    client = ovms_server.openai()
    assert [m.id for m in client.models.list().data] == ["HuggingFaceTB/SmolLM2-135M-Instruct"]
    assert client.models.retrieve("HuggingFaceTB/SmolLM2-135M-Instruct").id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    response = client.chat.completions.create(model="HuggingFaceTB/SmolLM2-135M-Instruct", messages=messages,
                                              temperature=0)
    assert "Paris" in response.choices[0].message.content
    streamed = client.chat.completions.create(model="HuggingFaceTB/SmolLM2-135M-Instruct", messages=messages,
                                              temperature=0, stream=True)
    assert "Paris" in "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    completion = client.completions.create(model="HuggingFaceTB/SmolLM2-135M-Instruct",
                                           prompt="The capital of France is", max_tokens=5, temperature=0)
    assert "Paris" in completion.choices[0].text


def test_generation_config_path_sets_the_default_sampling(ovms_server):
    client = ovms_server.openai()
    messages = [{"role": "user", "content": "Tell me a story about a dragon."}]

    def answer(**fields):
        return client.chat.completions.create(model="HuggingFaceTB/SmolLM2-135M-Instruct", messages=messages,
                                              max_tokens=30, **fields).choices[0].message.content

    # The graph's file says temperature 0: requests that do not say are greedy, so they repeat exactly. The graph
    # caches prefixes: a first answer puts the prompt's beginning in the cache, so that the three compared all
    # take it from there and are computed in the same shapes.
    answer()
    assert answer() == answer(seed=5) == answer(temperature=0)


def test_the_ovms_graph_answers_tokenize_through_its_own_node(ovms_server):
    import httpx

    answer = httpx.post(f"{ovms_server.base_url}/v3/tokenize", timeout=30,
                        json={"model": "HuggingFaceTB/SmolLM2-135M-Instruct", "prompt": "hello world"}).json()
    assert answer["count"] == len(answer["tokens"]) > 0
