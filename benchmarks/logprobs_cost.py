"""What log-probabilities cost: the same streamed chat requests without them, with the chosen tokens'
(``logprobs: true``, from the engine) and with alternatives (``top_logprobs: 5``, from the scoring pass),
interleaved level by level against one running server so that the three share the machine's state.

Usage::

    ovserve serve --port 8000 &
    python -m benchmarks.logprobs_cost --base-url http://127.0.0.1:8000/v3 --concurrency 1,4 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import sys

from benchmarks.loadgen import LoadConfig, run_levels
from benchmarks.workload import parse_int_list

VARIANTS: dict[str, tuple[tuple[str, object], ...]] = {
    "plain": (),
    "logprobs": (("logprobs", True),),
    "top_logprobs_5": (("logprobs", True), ("top_logprobs", 5)),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--concurrency", type=parse_int_list, default=[1, 4])
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions of the three variants")
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args(argv)
    for concurrency in args.concurrency:
        rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for _ in range(args.rounds):
            for name, extra in VARIANTS.items():
                config = LoadConfig(base_url=args.base_url, max_tokens=args.max_tokens, extra_body=extra)
                (result,) = run_levels([concurrency], config)
                if result.errors:
                    raise SystemExit(f"{name} at {concurrency}: {result.first_error}")
                rates[name].append(result.tokens_per_s)
                print(json.dumps({"variant": name, **result.to_dict()}), file=sys.stderr)
        mean = {name: sum(values) / len(values) for name, values in rates.items()}
        print(json.dumps({"concurrency": concurrency, "tokens_per_s": mean,
                          "ratio_to_plain": {name: value / mean["plain"] for name, value in mean.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
