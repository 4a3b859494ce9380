"""The per-token cost of ovserve's own calculators: detokenize + serialize, outside any server.

    python -m benchmarks.calculators [--model PATH.gguf]

Feeds generated-token deltas (the real model's tokenizer, a real English reply) through
DetokenizerCalculator → OpenAIResponseCalculator in streaming mode, one graph run per request, and
reports CPU microseconds per token with one token per delta (every engine step) and with four
(what a client that reads slower than the engine steps gets: deltas are merged).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from benchmarks.workload import MODEL_PATH
from ovserve.calculators.llm.schema import ChatCompletionRequest
from ovserve.calculators.llm.types import GenerationDelta, LLMRequest
from ovserve.engine.settings import find_model_files
from ovserve.engine.tokenizer import TextTokenizer
from ovserve.framework import Graph, build_registry, graph_from_text

GRAPH = """
input_stream: "REQUEST:request"
input_stream: "DELTAS:deltas"
input_side_packet: "TOKENIZER:tokenizer"
output_stream: "HTTP_RESPONSE_PAYLOAD:out"
node { calculator: "DetokenizerCalculator" input_stream: "DELTAS:deltas" input_stream: "REQUEST:request"
       input_side_packet: "TOKENIZER:tokenizer" output_stream: "TEXT:text" }
node { calculator: "OpenAIResponseCalculator" input_stream: "REQUEST:request" input_stream: "TEXT:text"
       output_stream: "HTTP_RESPONSE_PAYLOAD:out" }
"""
REPLY = (
    "The capital of France is Paris. It is known for the Eiffel Tower, the Louvre museum, and its cafés. "
    "Paris has been the country's political and cultural centre for centuries, and today it is home to "
    "more than two million people. Visitors come for its art, its food and its long walks by the Seine. "
)


async def _one_request(graph: Graph, request: LLMRequest, token_ids: list[int], per_delta: int) -> int:
    async with graph.run() as run:
        await run.send("REQUEST", request)
        run.close_input("REQUEST")
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


async def measure(model: Path, requests: int = 200) -> dict[str, Any]:
    tokenizer = TextTokenizer.load(find_model_files(model))
    token_ids = tokenizer.encode(REPLY, add_special_tokens=False).tolist()[:128]
    graph = await Graph.start(graph_from_text(GRAPH, build_registry(entry_points=False)), {"TOKENIZER": tokenizer})
    body = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    results: dict[str, Any] = {"fast_detokenizer": tokenizer.fast_detokenizer, "tokens_per_request": len(token_ids)}
    for per_delta in (1, 4):
        request = LLMRequest("chat", body, "m", "chatcmpl-bench", int(time.time()))
        await _one_request(graph, request, token_ids, per_delta)  # warm-up
        cpu, wall = time.process_time(), time.perf_counter()
        tokens = 0
        for _ in range(requests):
            tokens += await _one_request(graph, request, token_ids, per_delta)
        results[f"cpu_us_per_token_{per_delta}_per_delta"] = round((time.process_time() - cpu) / tokens * 1e6, 1)
        results[f"wall_us_per_token_{per_delta}_per_delta"] = round((time.perf_counter() - wall) / tokens * 1e6, 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=MODEL_PATH)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.model, args.requests)), indent=2))


if __name__ == "__main__":
    main()
