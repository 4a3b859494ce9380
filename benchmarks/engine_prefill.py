"""The bare engine's time to first token for one long prompt, by scheduler chunk size: what the long-prompt
workload's first tokens would be with nothing in front of the engine.

Usage::

    python -m benchmarks.engine_prefill [--prompt-tokens 2000] [--repeats 3]
                                        [--max-num-batched-tokens 256,1024,2048] [--plugin-config K=V ...]

For each chunk size, the engine is loaded as ``ovserve serve``'s engine process loads it (its CPU defaults, the
given plugin properties over them) but with prefix caching off, and each of ``--repeats`` prompts (corpus text
from its own offset, cut to ``--prompt-tokens`` token ids) is added alone and stepped until its first token.
Prints one JSON line per chunk size with the seconds each prompt took.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from benchmarks.corpus import words
from benchmarks.engine_direct import _parse_plugin_config
from benchmarks.workload import MODEL_PATH, parse_int_list


def first_token_seconds(model: Path, chunk: int, plugin_config: dict[str, str], prompt_tokens: int,
                        repeats: int) -> list[float]:
    """Seconds to the first token of ``repeats`` distinct prompts, one at a time."""
    import numpy as np
    import openvino as ov
    import openvino_genai as genai

    from ovserve.engine.llm_core import load_pipeline
    from ovserve.engine.settings import EngineSettings, find_model_files, plugin_config_for

    settings = EngineSettings(find_model_files(model), plugin_config=plugin_config_for("CPU", plugin_config),
                              max_num_batched_tokens=chunk, enable_prefix_caching=False)
    pipeline = load_pipeline(settings)
    tokenizer = pipeline.get_tokenizer()
    seconds = []
    for number in range(repeats):
        ids = tokenizer.encode(words(prompt_tokens, 5000 * number + 7), add_special_tokens=False).input_ids.data
        prompt = ov.Tensor(np.ascontiguousarray(ids[:, :prompt_tokens], dtype=np.int64))
        config = genai.GenerationConfig()
        config.max_new_tokens, config.do_sample = 1, False
        started = time.perf_counter()
        handle = pipeline.add_request(number, prompt, config)
        while handle.get_status() == genai.GenerationStatus.RUNNING:
            pipeline.step()
        seconds.append(round(time.perf_counter() - started, 2))
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=MODEL_PATH)
    parser.add_argument("--prompt-tokens", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-num-batched-tokens", type=parse_int_list, default=[256, 1024, 2048])
    parser.add_argument("--plugin-config", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    plugin_config = _parse_plugin_config(args.plugin_config)
    for chunk in args.max_num_batched_tokens:
        row: dict[str, Any] = {"max_num_batched_tokens": chunk, "plugin_config": plugin_config,
                               "prompt_tokens": args.prompt_tokens,
                               "first_token_s": first_token_seconds(args.model, chunk, plugin_config,
                                                                    args.prompt_tokens, args.repeats)}
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
