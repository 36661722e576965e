"""Iterative (on-policy) DPO: each round samples from the previous round's tuned policy.

    python -m flows.iterative_dpo --config configs/demo.yaml --rounds 2
"""

from __future__ import annotations

import sys

from prefect import flow

from flows.full_pipeline import cli, full_pipeline
from sumpref.config import RunConfig


@flow(name="sumpref-iterative-dpo")
def iterative_dpo(config: RunConfig = RunConfig(), rounds: int = 2) -> str:
    """Run `rounds` DPO rounds; rounds already finished (same config) come from cache."""
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    return full_pipeline(config.model_copy(update={"iterations": rounds}))


def main(argv: list[str] | None = None) -> int:
    return cli(__doc__, argv, lambda cfg, args: iterative_dpo(cfg, args.rounds),
               extra=lambda ap: ap.add_argument("--rounds", type=int, default=2))


if __name__ == "__main__":
    sys.exit(main())
