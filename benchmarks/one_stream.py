"""One stream on each LLM engine kind, interleaved: the continuous-batching engine against the stateful pipeline
(``pipeline_type: LM``), through ovserve's own front ends and engine processes, as ``ovserve serve`` runs them.

Both engines are loaded side by side (each in its process, with ovserve's plugin defaults for the CPU) and take
turns: round r sends one greedy request of ``--max-tokens`` (EOS ignored) to the batching engine, then the same to
the stateful one, or the other way round on odd rounds. The inter-token time is the gap between two token arrivals
divided by the tokens that arrived (the batching engine may send several at once); each round gives one p50 per
kind, and the report is the median of the rounds' p50s with their spread (min to max), and the time to the first
token likewise. No HTTP and no detokenization: what differs is the engine alone.

Usage::

    python -m benchmarks.one_stream --model PATH.gguf --rounds 5 --max-tokens 128
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.workload import messages_for

KINDS = ("batching", "stateful")


async def one_request(engine: Any, token_ids: Any, max_tokens: int) -> tuple[float, float]:
    """(time to the first token, p50 inter-token time) of one greedy request, in seconds."""
    from ovserve.engine.protocol import SamplingParams

    params = SamplingParams(max_new_tokens=max_tokens, temperature=0, ignore_eos=True)
    started = time.perf_counter()
    last, first, gaps, tokens = started, None, [], 0
    async for delta in engine.submit(token_ids, params):
        if delta.error is not None:
            raise delta.error
        now = time.perf_counter()
        count = len(delta.token_ids)
        if count:
            if first is None:
                first = now - started
            else:
                gaps.extend([(now - last) / count] * count)
            last, tokens = now, tokens + count
    if tokens != max_tokens or first is None:
        raise RuntimeError(f"asked for {max_tokens} tokens, got {tokens}")
    return first, statistics.median(gaps)


async def run(model_path: Path, rounds: int, max_tokens: int) -> dict[str, Any]:
    from ovserve.engine.client import EngineClient
    from ovserve.engine.cpu import detect_cpu
    from ovserve.engine.settings import EngineSettings, find_model_files, plugin_config_for
    from ovserve.engine.stateful_kind import StatefulEngine, StatefulLLMSpec
    from ovserve.engine.tokenizer import TextTokenizer

    model = find_model_files(model_path)
    cpu = detect_cpu()
    plugin_config = plugin_config_for("CPU", {}, cpu=cpu)
    tokenizer = TextTokenizer.load(model)
    prompt = tokenizer.encode_whole(tokenizer.apply_chat_template(messages_for(0)), add_special_tokens=False)
    engines = {"batching": EngineClient(EngineSettings(model, plugin_config=plugin_config)),
               "stateful": StatefulEngine(StatefulLLMSpec(model, plugin_config=plugin_config))}
    results: dict[str, dict[str, list[float]]] = {kind: {"ttft": [], "itl": []} for kind in KINDS}
    try:
        for engine in engines.values():
            await engine.start()
            await one_request(engine, prompt, 8)  # warm up: the first call compiles what it needs
        for number in range(rounds):
            for kind in KINDS if number % 2 == 0 else tuple(reversed(KINDS)):
                ttft, itl = await one_request(engines[kind], prompt, max_tokens)
                results[kind]["ttft"].append(ttft)
                results[kind]["itl"].append(itl)
    finally:
        for engine in engines.values():
            await engine.stop()
    return {"cpu": cpu.describe(), "model": str(model_path), "prompt_tokens": int(prompt.size),
            "max_tokens": max_tokens, "rounds": rounds, "plugin_config": plugin_config, "results": results}


def report(data: dict[str, Any]) -> str:
    """A Markdown table: each kind's median of the rounds' p50s (ms), with the spread."""
    lines = [f"one stream, {data['prompt_tokens']}-token prompt, {data['max_tokens']} tokens, {data['rounds']} "
             f"interleaved rounds; {data['cpu']}", "",
             "| engine | inter-token p50 (median, min to max) | first token (median, min to max) |", "|---|---|---|"]
    for kind, values in data["results"].items():
        itl, ttft = [v * 1000 for v in values["itl"]], [v * 1000 for v in values["ttft"]]
        lines.append(f"| {kind} | {statistics.median(itl):.2f} ms ({min(itl):.2f} to {max(itl):.2f}) | "
                     f"{statistics.median(ttft):.1f} ms ({min(ttft):.1f} to {max(ttft):.1f}) |")
    return "\n".join(lines)


def main() -> None:
    from ovserve.store.fetch import DEFAULT_MODEL, pull

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a .gguf or IR folder (default: the default model)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    data = asyncio.run(run(args.model or pull(DEFAULT_MODEL, quiet=True), args.rounds, args.max_tokens))
    if args.json_out:
        args.json_out.write_text(json.dumps(data, indent=2))
    print(report(data))


if __name__ == "__main__":
    main()
