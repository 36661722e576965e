"""Nightly iterative DPO that continues from the champion.

Each round: that date's fresh articles -> questions -> summaries sampled from the champion ->
judged -> pairs -> DPO from the champion -> evaluation of the candidate against the champion on
the round's held-out articles -> promoted (merged, becomes the champion) or rejected, both
recorded in `{root}/champion/`. The night stops after `nightly.rounds` rounds, or after
`nightly.patience` rounds in a row without a promotion. A rerun of the same date reuses every
finished task; the next date starts from the new champion.

    python -m flows.nightly --config configs/demo.yaml --date 2026-12-03 [section.field=value ...]
"""

from __future__ import annotations

import sys
from datetime import date as Date
from datetime import datetime, timezone

from prefect import flow, get_run_logger

from flows.evaluate import evaluate_on
from flows.full_pipeline import cli
from sumpref.config import RunConfig
from sumpref.nightly import check_nightly, round_config
from sumpref.stages.evaluation import run_eval_config
from tasks.champion import decide_round, publish_rounds, read_champion, record_round, select_articles, used_articles
from tasks.stages import (build_pairs, judge_summaries, load_articles, merge_adapter, reference_logprobs,
                          sample_summaries, train_dpo, write_questions)


def run_round(cfg: RunConfig, day: str, rnd: int, champ: dict, exclude: list[str]) -> dict:
    """One round from `champ`; returns its registry entry."""
    sample = select_articles(cfg, day, rnd, exclude)
    rcfg = round_config(cfg, sample, champ["model"])
    articles = load_articles(rcfg).result()
    questions = write_questions(rcfg, articles, rcfg.judge).result()
    samples = sample_summaries(rcfg, articles, questions, rcfg.policy).result()
    judged = judge_summaries(rcfg, questions, samples, rcfg.judge).result()
    pairs = build_pairs(rcfg, judged).result()
    reference = champ["base_model"] if cfg.nightly.reference == "fixed" else champ["model"]
    refprobs = reference_logprobs(rcfg, pairs, reference).result() if cfg.dpo.trainer == "packed" else None
    adapter = train_dpo(rcfg, pairs, champ["model"], refprobs).result()
    tuned = rcfg.policy.model_copy(update={"adapter": adapter.child("adapter")})
    upstream = {"articles": articles, "questions": questions, "samples": samples, "judged": judged, "pairs": pairs}
    report = evaluate_on(run_eval_config(rcfg, tuned), articles, questions, upstream, [adapter])
    promoted = decide_round(cfg, report)
    merged = merge_adapter(rcfg, champ["model"], adapter).result().child("model") if promoted else None
    return record_round(cfg, day, rnd, champ, adapter, report, articles, promoted, merged)


@flow(name="sumpref-nightly")
def nightly(config: RunConfig = RunConfig(), date: Date | None = None) -> str:
    """Rounds of DPO continuing from the champion on `date`'s articles (default: today, UTC);
    returns the URI of the per-round report."""
    cfg = config
    check_nightly(cfg)
    day = (date or datetime.now(timezone.utc).date()).isoformat()
    log = get_run_logger()
    champ = read_champion(cfg, day)
    exclude = used_articles(cfg, day)
    without_gain = 0
    log.info("night %s starts from champion %s (%s)", day, champ["id"], champ["model"])
    for rnd in range(1, cfg.nightly.rounds + 1):
        entry = run_round(cfg, day, rnd, champ, exclude)
        win = entry["win_rate"]
        log.info("round %s: %s (win rate vs %s %.3f, 95%% CI [%.3f, %.3f])", entry["id"], entry["status"],
                 champ["id"], win["value"], *win["ci95"])
        exclude = sorted({*exclude, *entry["articles"]["train"], *entry["articles"]["eval"]})
        if entry["status"] == "promoted":
            champ, without_gain = entry, 0
        else:
            without_gain += 1
            if without_gain >= cfg.nightly.patience:
                log.info("stopping: %d round(s) without a promotion (nightly.patience)", without_gain)
                break
    return publish_rounds(cfg, f"sumpref rounds: {cfg.name}")


def main(argv: list[str] | None = None) -> int:
    return cli(__doc__, argv, lambda cfg, args: nightly(cfg, Date.fromisoformat(args.date) if args.date else None),
               extra=lambda ap: ap.add_argument("--date", help="YYYY-MM-DD (default: today, UTC)"))


if __name__ == "__main__":
    sys.exit(main())
