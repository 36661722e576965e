"""Deployments: the demo pipeline (trigger it from the Prefect UI) and a nightly iterative-DPO run.

    prefect server start                          # or point PREFECT_API_URL at your server
    python -m deployments.serve [--config configs/demo.yaml] [--nightly-cron "0 2 * * *"]

`serve` registers both deployments and executes their runs in this process until stopped.
For work pools and Docker images, use `prefect deploy --all` with `prefect.yaml` instead.
"""

from __future__ import annotations

import argparse

from prefect import serve

from flows.full_pipeline import full_pipeline
from flows.iterative_dpo import iterative_dpo
from sumpref.config import load_config

NIGHTLY_CRON = "0 2 * * *"


def build_deployments(config_path: str = "configs/demo.yaml", nightly_cron: str = NIGHTLY_CRON,
                      rounds: int = 2, overrides: list[str] | None = None) -> list:
    cfg = load_config(config_path, overrides).model_dump(mode="json")
    return [
        full_pipeline.to_deployment(name="pipeline", parameters={"config": cfg}, tags=["sumpref"],
                                    description="Full pipeline; edit the config in the run form."),
        iterative_dpo.to_deployment(name="nightly-iterative-dpo", cron=nightly_cron, parameters={"config": cfg, "rounds": rounds, "fresh_articles": True},
                                    tags=["sumpref", "nightly"],
                                    description="Nightly on-policy iterative DPO on that day's article sample."),
    ]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--nightly-cron", default=NIGHTLY_CRON)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    serve(*build_deployments(args.config, args.nightly_cron, args.rounds, args.overrides))


if __name__ == "__main__":
    main()
