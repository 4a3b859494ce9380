"""The per-token cost of ovserve's own calculators, outside any server.

    python -m benchmarks.calculators [--model PATH.gguf]

Feeds generated-token deltas (the real model's tokenizer, a real English reply) through the per-token
part of the served graph (detokenize → parse_reasoning → parse_tools → serialize) in streaming mode,
one graph run per request, and the same without the two parser nodes, in interleaved rounds. Reports
CPU microseconds per token with one token per delta (every engine step) and with four (what a client
that reads slower than the engine steps gets: deltas are merged).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.workload import MODEL_PATH
from ovserve.calculators.llm.plan import plan_request
from ovserve.calculators.llm.schema import ChatCompletionRequest
from ovserve.calculators.llm.types import GenerationDelta, LLMRequest, ModelParsers, Prompt
from ovserve.engine.protocol import SamplingParams
from ovserve.engine.settings import find_model_files
from ovserve.engine.tokenizer import TextTokenizer
from ovserve.framework import Graph, build_registry, graph_from_text

_HEAD = """
input_stream: "REQUEST:request"
input_stream: "PROMPT:prompt"
input_stream: "DELTAS:deltas"
input_side_packet: "TOKENIZER:tokenizer"
input_side_packet: "PARSERS:parsers"
output_stream: "HTTP_RESPONSE_PAYLOAD:out"
node { calculator: "DetokenizerCalculator" input_stream: "DELTAS:deltas" input_stream: "PROMPT:prompt"
       input_side_packet: "TOKENIZER:tokenizer" output_stream: "TEXT:text" }
"""
#: The per-token part of graphs/llm.pbtxt, and the same without its two parser nodes (what it was before them).
GRAPHS = {
    "served": _HEAD + """
node { calculator: "ReasoningParserCalculator" input_stream: "PROMPT:prompt" input_stream: "TEXT:text"
       output_stream: "PARSED:answer" }
node { calculator: "ToolCallParserCalculator" input_stream: "PROMPT:prompt" input_stream: "TEXT:answer"
       output_stream: "PARSED:message" }
node { calculator: "OpenAIResponseCalculator" input_stream: "REQUEST:request" input_stream: "TEXT:message"
       output_stream: "HTTP_RESPONSE_PAYLOAD:out" }
""",
    "without_parsers": _HEAD + """
node { calculator: "OpenAIResponseCalculator" input_stream: "REQUEST:request" input_stream: "TEXT:text"
       output_stream: "HTTP_RESPONSE_PAYLOAD:out" }
""",
}
REPLY = (
    "The capital of France is Paris. It is known for the Eiffel Tower, the Louvre museum, and its cafés. "
    "Paris has been the country's political and cultural centre for centuries, and today it is home to "
    "more than two million people. Visitors come for its art, its food and its long walks by the Seine. "
)


async def _one_request(graph: Graph, request: LLMRequest, prompt: Prompt, token_ids: list[int],
                       per_delta: int) -> int:
    async with graph.run() as run:
        await run.send("REQUEST", request)
        run.close_input("REQUEST")
        await run.send("PROMPT", prompt)
        run.close_input("PROMPT")
        count = 0
        for start in range(0, len(token_ids), per_delta):
            chunk = tuple(token_ids[start:start + per_delta])
            count += len(chunk)
            finish = "length" if start + per_delta >= len(token_ids) else None
            await run.send("DELTAS", GenerationDelta(chunk, finish, 30, count))
        run.close_input("DELTAS")
        chunks = [packet async for packet in run.outputs("HTTP_RESPONSE_PAYLOAD")]
        assert chunks[-1].value.last
        return len(token_ids)


async def measure(model: Path, requests: int = 200, rounds: int = 3) -> dict[str, Any]:
    """CPU µs per token of each graph in GRAPHS, measured in interleaved rounds (the best round counts)."""
    tokenizer = TextTokenizer.load(find_model_files(model))
    token_ids = tokenizer.encode(REPLY, add_special_tokens=False).tolist()[:128]
    side = {"TOKENIZER": tokenizer, "PARSERS": ModelParsers()}
    graphs = {name: await Graph.start(graph_from_text(text, build_registry(entry_points=False)), side)
              for name, text in GRAPHS.items()}
    body = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    request = LLMRequest("chat", body, "m", "chatcmpl-bench", int(time.time()))
    prompt = Prompt(np.array([1, 2, 3]), SamplingParams(max_new_tokens=len(token_ids)),
                    plan=plan_request(body, ModelParsers(), tokenizer))
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, graph in graphs.items():
            for per_delta in (1, 4):
                await _one_request(graph, request, prompt, token_ids, per_delta)  # warm-up
                cpu = time.process_time()
                tokens = 0
                for _ in range(requests):
                    tokens += await _one_request(graph, request, prompt, token_ids, per_delta)
                key = f"{name}_cpu_us_per_token_{per_delta}_per_delta"
                best[key] = min(best.get(key, float("inf")), (time.process_time() - cpu) / tokens * 1e6)
    results: dict[str, Any] = {"fast_detokenizer": tokenizer.fast_detokenizer, "tokens_per_request": len(token_ids)}
    results.update({key: round(value, 1) for key, value in best.items()})
    for per_delta in (1, 4):  # the names the run report reads: the served graph's
        results[f"cpu_us_per_token_{per_delta}_per_delta"] = results[f"served_cpu_us_per_token_{per_delta}_per_delta"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=MODEL_PATH)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.model, args.requests)), indent=2))


if __name__ == "__main__":
    main()
