"""KV cache eviction and sparse attention (OVMS's ``cache_eviction_config`` and ``sparse_attention_config``), on and
off, on the bare engine (``ovserve.engine.llm_core.load_pipeline``, stepped here).

- ``eviction``: long greedy generations (``ignore_eos``, ``--new-tokens`` each, ``--streams`` at once), where eviction
  acts (OpenVINO GenAI evicts nothing during prefill). Per variant: output tok/s, the KV cache the engine held at its
  largest (``kv_cache_size_in_bytes``, the cache grows as needed with ``cache_size`` 0), and how far the answers
  move against eviction off: the tokens each answer shares with its answer without eviction before they part, and
  the share of distinct 4-grams in each answer (a loop lowers it), property-level, never exact tokens.
- ``sparse``: long prompts (benchmarks/long_prompts.py's corpus, ``--prompt-tokens`` each), one at a time, a few new
  tokens each: time to the first token (prefill) per variant, and how many of the first new tokens match eviction off.

Usage::

    python -m benchmarks.engine_features eviction [--streams 1,4] [--new-tokens 1024]
    python -m benchmarks.engine_features sparse [--prompt-tokens 2000,6000]

Prints a markdown table per variant and writes it, with the raw figures, as ``engine-features-<kind>-<stamp>.json``
into ``--out``. Runs are interleaved (``--rounds``): each round loads every variant in turn.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.corpus import words
from benchmarks.tables import markdown
from benchmarks.workload import MODEL_PATH, PROMPTS, parse_int_list
from ovserve.engine.cpu import detect_cpu
from ovserve.engine.scheduler_options import CacheEviction, SparseAttention
from ovserve.engine.settings import EngineSettings, find_model_files, plugin_config_for

REPO_ROOT = Path(__file__).resolve().parents[1]
EVICTION_VARIANTS: dict[str, CacheEviction | None] = {
    "eviction off": None,
    "eviction 32+128, max 512 (NORM_SUM)": CacheEviction(32, 128, 512),
    "eviction 32+64, max 256 (NORM_SUM)": CacheEviction(32, 64, 256),
}
SPARSE_VARIANTS: dict[str, SparseAttention | None] = {
    "sparse off": None,
    "TRISHAPE (GenAI's defaults)": SparseAttention("TRISHAPE"),
    "XATTENTION (GenAI's defaults)": SparseAttention("XATTENTION"),
}


def settings_for(model: Path, **features: Any) -> EngineSettings:
    """The engine as ``ovserve serve`` loads it (this CPU's plugin defaults), with ``features``."""
    return EngineSettings(model=find_model_files(model), plugin_config=plugin_config_for("CPU", {}), **features)


def generate(settings: EngineSettings, prompts: list[str], new_tokens: int) -> dict[str, Any]:
    """Load the engine, run ``prompts`` together to ``new_tokens`` each; the answers' token ids and the figures."""
    import numpy
    import openvino
    import openvino_genai

    from ovserve.engine.llm_core import load_pipeline

    pipeline = load_pipeline(settings)
    tokenizer = pipeline.get_tokenizer()
    config = openvino_genai.GenerationConfig()
    config.max_new_tokens, config.ignore_eos, config.do_sample = new_tokens, True, False
    handles, answers, first_token = [], [[] for _ in prompts], [None] * len(prompts)
    started = time.perf_counter()
    for number, prompt in enumerate(prompts):
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
        ids = numpy.asarray(tokenizer.encode(text, add_special_tokens=False).input_ids.data, dtype=numpy.int64)
        handles.append(pipeline.add_request(number, openvino.Tensor(ids.reshape(1, -1)), config))
    peak_bytes = 0
    while pipeline.has_non_finished_requests():
        pipeline.step()
        peak_bytes = max(peak_bytes, int(pipeline.get_metrics().kv_cache_size_in_bytes))
        for number, handle in enumerate(handles):
            while handle.can_read():
                for output in handle.read().values():
                    answers[number].extend(output.generated_ids)
                    if first_token[number] is None and answers[number]:
                        first_token[number] = time.perf_counter() - started
    wall = time.perf_counter() - started
    return {"answers": answers, "wall_s": wall, "tokens_per_s": sum(map(len, answers)) / wall,
            "kv_cache_peak_mib": peak_bytes / 2**20, "ttft_s": first_token}


def shared_prefix(a: list[int], b: list[int]) -> int:
    """How many tokens ``a`` and ``b`` share from their start."""
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return index
    return min(len(a), len(b))


def distinct_4grams(tokens: list[int]) -> float:
    """The share of an answer's 4-grams that are distinct (1.0: no repeats; a loop lowers it)."""
    grams = [tuple(tokens[i:i + 4]) for i in range(len(tokens) - 3)]
    return len(set(grams)) / len(grams) if grams else 1.0


def run_eviction(args: argparse.Namespace) -> tuple[list[str], list[list[Any]], dict[str, Any]]:
    rows, raw = [], {}
    for streams in args.streams:
        prompts = [PROMPTS[i % len(PROMPTS)] for i in range(streams)]
        for round_number in range(args.rounds):
            results = {label: generate(settings_for(args.model, cache_eviction=eviction), prompts, args.new_tokens)
                       for label, eviction in EVICTION_VARIANTS.items()}
            base = results["eviction off"]["answers"]
            for label, result in results.items():
                shared = [shared_prefix(a, b) for a, b in zip(result["answers"], base, strict=True)]
                rows.append([label, streams, round_number + 1, round(result["tokens_per_s"], 1),
                             round(result["kv_cache_peak_mib"], 1), statistics.median(shared),
                             round(statistics.mean(map(distinct_4grams, result["answers"])), 3)])
                raw[f"{label}, {streams} streams, round {round_number + 1}"] = {
                    k: v for k, v in result.items() if k != "answers"}
                print(rows[-1], flush=True)
    headers = ["variant", "streams", "round", "tok/s", "KV cache peak MiB", "tokens shared with 'off' (median)",
               "distinct 4-grams (mean)"]
    return headers, rows, raw


def run_sparse(args: argparse.Namespace) -> tuple[list[str], list[list[Any]], dict[str, Any]]:
    rows, raw = [], {}
    for tokens in args.prompt_tokens:
        prompt = (f"Read this text, then say in one sentence what it is about.\n\n{words(int(tokens * 0.75), 7)}")
        for round_number in range(args.rounds):
            results = {label: generate(settings_for(args.model, sparse_attention=sparse), [prompt], 16)
                       for label, sparse in SPARSE_VARIANTS.items()}
            base = results["sparse off"]["answers"][0]
            for label, result in results.items():
                rows.append([label, tokens, round_number + 1, round(result["ttft_s"][0] * 1000),
                             f"{shared_prefix(result['answers'][0], base)}/16"])
                raw[f"{label}, {tokens} tokens, round {round_number + 1}"] = {
                    k: v for k, v in result.items() if k != "answers"}
                print(rows[-1], flush=True)
    return ["variant", "prompt words x 4/3", "round", "TTFT ms", "first new tokens equal to 'off'"], rows, raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.engine_features", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("eviction", "sparse"))
    parser.add_argument("--model", type=Path, default=MODEL_PATH)
    parser.add_argument("--streams", type=parse_int_list, default=[1, 4])
    parser.add_argument("--new-tokens", type=int, default=1024)
    parser.add_argument("--prompt-tokens", type=parse_int_list, default=[2000, 6000])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    headers, rows, raw = (run_eviction if args.kind == "eviction" else run_sparse)(args)
    table = markdown(headers, rows)
    print(f"\n{args.kind}: {detect_cpu().describe()}\n\n{table}")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"engine-features-{args.kind}-{stamp}.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "table": table, "raw": raw}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

