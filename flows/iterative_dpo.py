"""Iterative (on-policy) DPO: each round samples from the previous round's tuned policy.

    python -m flows.iterative_dpo --config configs/demo.yaml --rounds 2
"""

from __future__ import annotations

import sys
from datetime import date

from prefect import flow

from flows.full_pipeline import cli, full_pipeline
from sumpref.config import RunConfig


@flow(name="sumpref-iterative-dpo")
def iterative_dpo(config: RunConfig = RunConfig(), rounds: int = 2, fresh_articles: bool = False) -> str:
    """Run `rounds` DPO rounds; rounds already finished (same config) come from cache.

    `fresh_articles` (the nightly deployment sets it) draws that day's article sample (data seed =
    the date), so each night trains on new articles instead of returning last night's cached run.
    """
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    update: dict = {"iterations": rounds}
    if fresh_articles:
        update["data"] = config.data.model_copy(update={"seed": int(date.today().strftime("%Y%m%d"))})
    return full_pipeline(config.model_copy(update=update))


def main(argv: list[str] | None = None) -> int:
    return cli(__doc__, argv, lambda cfg, args: iterative_dpo(cfg, args.rounds),
               extra=lambda ap: ap.add_argument("--rounds", type=int, default=2))


if __name__ == "__main__":
    sys.exit(main())
