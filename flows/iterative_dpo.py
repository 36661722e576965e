"""Iterative (on-policy) DPO: each round samples from the previous round's tuned policy.

    python -m flows.iterative_dpo --config configs/demo.yaml --rounds 2
"""

from __future__ import annotations

import argparse
import sys

from prefect import flow

from flows.full_pipeline import full_pipeline
from sumpref.config import ConfigError, RunConfig, load_config


@flow(name="sumpref-iterative-dpo")
def iterative_dpo(config: RunConfig = RunConfig(), rounds: int = 2) -> str:
    """Run `rounds` DPO rounds; rounds already finished (same config) come from cache."""
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    return full_pipeline(config.model_copy(update={"iterations": rounds}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"\nReport: {iterative_dpo(cfg, args.rounds)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
