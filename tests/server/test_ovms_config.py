"""An OVMS user's config.json + graph.pbtxt, written by hand, served unchanged."""

import json
import re
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


#: OVMS's engine features, each as an OVMS user writes it (the draft model relative to the graph, as OVMS resolves it;
#: the default model is its own draft). Speculative decoding and cache eviction cannot be combined (the engine fails
#: its first step): two graphs.
FEATURE_OPTIONS = {
    "drafted": """models_path: "./SmolLM2-135M-Instruct.Q4_1.gguf",
              draft_models_path: "./SmolLM2-135M-Instruct.Q4_1.gguf",
              draft_device: "CPU",
              draft_max_num_seqs: 16,
              draft_block_size: 32,
              sparse_attention_config: { mode: TRISHAPE, num_last_dense_tokens_in_prefill: 64 },
              tool_parser: "hermes3",
              enable_tool_guided_generation: true""",
    "evicting": """models_path: "./SmolLM2-135M-Instruct.Q4_1.gguf",
              cache_eviction_config: { start_size: 32, recent_size: 64, max_cache_size: 256,
                                       aggregation_mode: SUM, apply_rotation: false,
                                       kv_crush_config: { budget: 1, anchor_point_mode: MEAN } },
              sparse_attention_config: { mode: XATTENTION }""",
}


@pytest.fixture(scope="module")
def features_server(default_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("ovms-features")
    listed = []
    for name, options in FEATURE_OPTIONS.items():
        (root / name).mkdir()
        (root / name / default_model.name).symlink_to(default_model)
        start, end = re.search(r'models_path: .*?generation_config_path: "[^"]*"', OVMS_GRAPH, re.DOTALL).span()
        graph = textwrap.dedent(OVMS_GRAPH[:start] + options + OVMS_GRAPH[end:])
        (root / name / "graph.pbtxt").write_text(graph)
        listed.append({"name": name, "base_path": name})
    (root / "config.json").write_text(json.dumps({"model_config_list": [], "mediapipe_config_list": listed}))
    server = start_server(["--config_path", str(root / "config.json")], root)
    yield server
    server.stop()


@pytest.mark.parametrize("name", list(FEATURE_OPTIONS))
def test_an_ovms_graph_with_each_engine_feature_loads_and_answers(features_server, name):
    client = features_server.openai()
    long_story = "Once upon a time, a dragon lived in a cave above a quiet village. " * 20
    answer = client.chat.completions.create(model=name, max_tokens=80, temperature=0, messages=[
        {"role": "user", "content": long_story + "How does the story go on?"}])
    assert answer.choices[0].message.content and answer.usage.completion_tokens > 0
    streamed = client.chat.completions.create(model=name, max_tokens=20, stream=True, messages=[
        {"role": "user", "content": "Say hello to the dragon who lives in the cave above the quiet village."}])
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)


def test_the_features_are_on_in_the_engines_the_log_says(features_server):
    log = "".join(features_server.lines)
    assert "speculative decoding with the draft model" in log
    assert "KV cache eviction CacheEviction(start_size=32, recent_size=64, max_cache_size=256" in log
    assert "sparse attention SparseAttention(mode='XATTENTION'" in log
    assert "a call the model begins in the hermes3 format is held to the tools' schemas" in log
    assert "draft_block_size has no effect" in log


def test_a_prompt_length_the_eviction_engine_fails_on_is_refused_and_the_engine_keeps_serving(features_server):
    import httpx

    from tests.server.test_bad_input import assert_openai_error

    # start_size 32 and SnapKV's window of 8: 33 to 39 prompt tokens failed the engine's step
    response = httpx.post(f"{features_server.base_url}/v3/completions", timeout=30,
                          json={"model": "evicting", "prompt": list(range(100, 135)), "max_tokens": 4})
    assert_openai_error(response, 400, "prompt")
    assert "cannot take prompts of 33 to 39 tokens" in response.json()["error"]["message"]
    for length in (32, 40):
        answer = features_server.openai().completions.create(model="evicting", prompt=list(range(100, 100 + length)),
                                                             max_tokens=4)
        assert answer.usage.prompt_tokens == length and answer.choices[0].text is not None
    starts = [line for line in httpx.get(f"{features_server.base_url}/metrics", timeout=10).text.splitlines()
              if line.startswith("ovserve_engine_starts_total") and '"evicting"' in line]
    assert [float(line.split()[-1]) for line in starts] == [1.0], starts  # never restarted
