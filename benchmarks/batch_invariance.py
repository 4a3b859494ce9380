"""Does a request's greedy output depend on the batch? Checked on the engine directly, per setting.

Every prompt is first generated alone, on an engine with the settings under test but no prefix
caching (the reference). Then, on an engine with the settings under test:

- ``together``: all short prompts added at once, so that they share every step;
- ``staggered``: one short prompt added every 3 steps, so that prefills and decodes mix differently;
- ``split``: long prompts (longer than ``max_num_batched_tokens``, so the scheduler splits them
  across steps) added while short ones decode, which moves where the splits fall;
- ``prefix_cache`` (when the settings enable it): the long prompts and half the short ones again,
  now finding their beginnings in the cache, while the other short ones decode.

Each scenario reports how many outputs equal the reference. Usage::

    python -m benchmarks.batch_invariance                      # ovserve's defaults for this CPU
    python -m benchmarks.batch_invariance --batch-invariant    # the batch-invariant mode's settings
    python -m benchmarks.batch_invariance --plugin-config KV_CACHE_PRECISION=f32 \
        --scheduler '{"enable_prefix_caching": true}'
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.engine_direct import _parse_plugin_config
from benchmarks.workload import MODEL_PATH, PROMPTS

SHORT_QUESTIONS = (
    "What is the capital of France?", "Name three colours.", "What is 2 + 2?", "Who wrote Hamlet?",
    "What is the largest planet?", "Say hello in Spanish.", "What is water made of?", "Name a fruit.",
    "How many days are in a week?", "What is the opposite of hot?", "Name a musical instrument.",
    "What do bees make?", "What colour is the sky?", "Name an ocean.", "What is the boiling point of water?",
    "Name a programming language.",
)
#: A long shared beginning (about 700 tokens) for the split and prefix-cache prompts.
LONG_CONTEXT = " ".join(PROMPTS * 6)
LONG_QUESTIONS = ("Summarize the requests above in one sentence.", "Which request above is about Rome?",
                  "List the topics above.", "Which request is the longest?", "Answer the first request.",
                  "Translate the last request into French.")


class Engine:
    """A pipeline and a greedy step loop over token-id prompts."""

    def __init__(self, settings: Any) -> None:
        import openvino as ov
        import openvino_genai as ov_genai

        from ovserve.engine.llm_core import load_pipeline

        self._ov, self._genai = ov, ov_genai
        self.pipe = load_pipeline(settings)
        self.tokenizer = self.pipe.get_tokenizer()

    def encode(self, question: str, context: str = "") -> Any:
        import numpy as np

        content = f"{context}\n\n{question}" if context else question
        text = self.tokenizer.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
        return np.array(self.tokenizer.encode(text, add_special_tokens=False).input_ids.data, dtype=np.int64)

    def generate(self, prompts: Sequence[Any], max_tokens: int, every: int = 0,
                 first: Sequence[Any] = ()) -> list[list[int]]:
        """Greedy ``max_tokens`` tokens for each prompt. ``first`` prompts start at once and decode
        while ``prompts`` are added, one every ``every`` steps (0: all at once with ``first``)."""
        from ovserve.engine.protocol import SamplingParams

        config = SamplingParams(max_new_tokens=max_tokens, temperature=0, ignore_eos=True).to_generation_config()
        starts = [0] * len(first) + [index * every for index in range(len(prompts))]
        queue = [*first, *prompts]
        outputs: list[list[int]] = [[] for _ in queue]
        handles: dict[int, Any] = {}
        added = step = 0
        while added < len(queue) or handles:
            while added < len(queue) and starts[added] <= step:
                ids = self._ov.Tensor(queue[added].reshape(1, -1))
                handles[added] = self.pipe.add_request(added, ids, config)
                added += 1
            self.pipe.step()
            step += 1
            for index, handle in list(handles.items()):
                while handle.can_read():
                    for output in handle.read().values():
                        outputs[index].extend(output.generated_ids)
                if handle.get_status() != self._genai.GenerationStatus.RUNNING:
                    del handles[index]
        return outputs[len(first):]


SCENARIOS = ("together", "staggered", "split", "prefix_cache")


def check(settings: Any, max_tokens: int, scenarios: Sequence[str] = SCENARIOS) -> dict[str, list[int]]:
    """Run the ``scenarios`` (``prefix_cache`` only where the settings enable the cache); return, per scenario,
    which of its prompts' outputs differ from alone (indexes into the scenario's prompts; empty when all are the
    same)."""
    reference_engine = Engine(replace(settings, enable_prefix_caching=False))
    short = [reference_engine.encode(q) for q in SHORT_QUESTIONS]
    long = [reference_engine.encode(q, LONG_CONTEXT) for q in LONG_QUESTIONS]
    wanted = (*short, *long) if {"split", "prefix_cache"} & set(scenarios) else short
    alone = {id(p): reference_engine.generate([p], max_tokens)[0] for p in wanted}
    del reference_engine

    engine = Engine(settings)
    differ: dict[str, list[int]] = {}

    def score(name: str, prompts: Sequence[Any], outputs: list[list[int]]) -> None:
        differ[name] = [i for i, (p, out) in enumerate(zip(prompts, outputs, strict=True)) if alone[id(p)] != out]

    if "together" in scenarios:
        score("together", short, engine.generate(short, max_tokens))
    if "staggered" in scenarios:
        score("staggered", short, engine.generate(short, max_tokens, every=3))
    if "split" in scenarios:
        score("split", long, engine.generate(long, max_tokens, every=5, first=short[:8]))
    if "prefix_cache" in scenarios and settings.enable_prefix_caching:
        again = [*long, *short[:8]]  # every one of them ran above, so its beginning is in the cache
        score("prefix_cache", again, engine.generate(again, max_tokens, every=2, first=short[8:]))
    return differ


def _scenario_sizes() -> dict[str, int]:
    short, long = len(SHORT_QUESTIONS), len(LONG_QUESTIONS)
    return {"together": short, "staggered": short, "split": long, "prefix_cache": long + short // 2}


def main(argv: list[str] | None = None) -> int:
    from ovserve.engine.cpu import detect_cpu
    from ovserve.engine.settings import EngineSettings, find_model_files, plugin_config_for

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=MODEL_PATH, help=".gguf file or OpenVINO IR folder")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--batch-invariant", action="store_true", help="the batch-invariant mode's settings")
    parser.add_argument("--plugin-config", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--scheduler", default="{}", metavar="JSON",
                        help='EngineSettings scheduler fields, e.g. \'{"enable_prefix_caching": true}\'')
    args = parser.parse_args(argv)
    plugin_config = plugin_config_for("CPU", _parse_plugin_config(args.plugin_config),
                                      batch_invariant=args.batch_invariant)
    settings = EngineSettings(find_model_files(args.model), plugin_config=plugin_config, **json.loads(args.scheduler))
    started = time.monotonic()
    differ = check(settings, args.max_tokens)
    sizes = _scenario_sizes()
    report = {"cpu": detect_cpu().describe(), "plugin_config": plugin_config, "scheduler": json.loads(args.scheduler),
              **{name: f"{sizes[name] - len(d)}/{sizes[name]} the same" + (f", differ: {d}" if d else "")
                 for name, d in differ.items()},
              "seconds": round(time.monotonic() - started, 1)}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
