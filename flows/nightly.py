"""Nightly iterative DPO that continues from the champion.

Each round: that date's fresh articles -> questions -> the round subflow (`flows.round`:
summaries sampled from the champion -> judged -> pairs -> DPO from the champion) -> evaluation of
the candidate against the champion on the round's held-out articles -> promoted (merged, becomes
the champion) or rejected, both recorded in `{root}/champion/`. The night stops after `nightly.rounds` rounds, or after
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
from flows.round import dpo_round
from sumpref import stages
from sumpref.config import RunConfig
from sumpref.nightly import check_nightly, reference_model, round_config
from sumpref.stages.evaluation import run_eval_config
from sumpref.stages.round import Round
from tasks.champion import decide_round, publish_rounds, read_champion, record_round, select_articles, used_articles
from tasks.stages import load_articles, merge_adapter, write_questions


def nightly_round(cfg: RunConfig, day: str, rnd: int, champ: dict, exclude: list[str]) -> dict:
    """One round from `champ` on the round's fresh articles: the round subflow (the pipeline's),
    its evaluation against the champion, the decision; returns its registry entry."""
    sample = select_articles(cfg, day, rnd, exclude).result()
    rcfg = round_config(cfg, sample, champ["model"])
    articles = load_articles(rcfg).result()
    questions = write_questions(rcfg, articles, rcfg.judge).result()
    r = Round(rcfg, articles, questions, rcfg.policy, reference=reference_model(cfg, champ))
    done = dpo_round(r, rnd)
    upstream = {"articles": articles, "questions": questions, **{k: done[k] for k in ("samples", "judged", "pairs")}}
    report = evaluate_on(run_eval_config(rcfg, r.tuned(done)), articles, questions, upstream, [done["dpo"]])
    promoted = decide_round(cfg, report)
    merged = merge_adapter(stages.merged_spec(rcfg, champ["model"], done["dpo"])).result().child("model") if promoted else None
    return record_round(cfg, day, rnd, champ, done["dpo"], report, articles, promoted, merged)


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
        entry = nightly_round(cfg, day, rnd, champ, exclude)
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
