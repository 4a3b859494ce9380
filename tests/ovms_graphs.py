"""OVMS's LLM graph as its export script writes it (an ``HttpLLMCalculator`` node looping back on itself), with the
node options a test gives: for tests that check ovserve serves OVMS's graphs unchanged."""


def ovms_llm_graph(options: str) -> str:
    """The graph text, ``options`` being the ``LLMCalculatorOptions`` fields, one per line."""
    fields = "\n".join(f"      {line.strip()}" for line in options.strip().splitlines())
    return f"""input_stream: "HTTP_REQUEST_PAYLOAD:input"
output_stream: "HTTP_RESPONSE_PAYLOAD:output"
node: {{
  name: "LLMExecutor"
  calculator: "HttpLLMCalculator"
  input_stream: "LOOPBACK:loopback"
  input_stream: "HTTP_REQUEST_PAYLOAD:input"
  input_side_packet: "LLM_NODE_RESOURCES:llm"
  output_stream: "LOOPBACK:loopback"
  output_stream: "HTTP_RESPONSE_PAYLOAD:output"
  input_stream_info: {{ tag_index: 'LOOPBACK:0', back_edge: true }}
  node_options: {{
    [type.googleapis.com / mediapipe.LLMCalculatorOptions]: {{
{fields}
    }}
  }}
  input_stream_handler {{
    input_stream_handler: "SyncSetInputStreamHandler",
    options {{ [mediapipe.SyncSetInputStreamHandlerOptions.ext] {{ sync_set {{ tag_index: "LOOPBACK:0" }} }} }}
  }}
}}
"""
