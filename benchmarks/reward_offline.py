"""Which summaries does the reward prefer? Offline, on the judged samples of a finished run.

For the judged samples of a run (the newest `judged/` artifact under `--root`), this builds the
training pairs under each candidate rule and reports what the chosen and the rejected summaries
look like: cut at the token limit, more than 2 sentences, words copied from the article's start,
words, the judge's count. It also judges the lead baselines (first 2 and 3 sentences) of the same
articles with the same judge and questions, and says how often lead-3 outscores every sample and
every sample in the prompt's format: if the reward's optimum is the lead, training copies it.

    python benchmarks/reward_offline.py --root runs/demo            # a CPU run
    python benchmarks/reward_offline.py --root /tmp/runs/gpu --out $OUT/reward_offline.md

Candidate rules: `published` (the count, then the shorter when both reach 3), `format` (the same,
after the format rule: in format beats out of format, two out of format make no pair).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sumpref.artifacts import read_table  # noqa: E402
from sumpref.config import JUDGE_CONFIGS, JudgeConfig, PairsConfig  # noqa: E402
from sumpref.evaluation.baselines import LeadSummarizer  # noqa: E402
from sumpref.evaluation.format import format_metrics  # noqa: E402
from sumpref.fanout import read_shards  # noqa: E402
from sumpref.pairs import build_pairs, failed_reason, format_ok  # noqa: E402


def newest(root: Path, stage: str) -> Path:
    dirs = [d for d in (root / stage).iterdir() if (d / "_SUCCESS").exists()]
    if not dirs:
        raise SystemExit(f"{root}/{stage}: no finished artifact")
    return max(dirs, key=lambda d: (d / "_SUCCESS").stat().st_mtime)


def describe(rows: list[dict], articles: dict[str, dict]) -> dict:
    ms = [format_metrics(r["summary"], articles[r["article_id"]]["article"], r.get("finish_reason")) for r in rows]

    def mean(xs):
        xs = [x for x in xs if x == x]
        return sum(xs) / len(xs) if xs else float("nan")

    return {"n": len(rows), "cut_at_limit": mean([m["cut_at_limit"] for m in ms]),
            "over_2_sentences": mean([1 - m["at_most_2_sentences"] for m in ms]),
            "lead_copy_share": mean([m["lead_copy_share"] for m in ms]), "words": mean([r["n_words"] for r in rows]),
            "n_correct": mean([r["n_correct"] for r in rows])}


def stored_judge(stored: dict) -> JudgeConfig:
    """The judge config a run's meta.json holds. Runs before the per-kind configs stored every kind's
    fields (and a full backend for the embedded judges): those of other kinds are dropped."""
    cls = JUDGE_CONFIGS[stored.get("kind", "qa")]
    fields = {k: v for k, v in stored.items() if k in cls.model_fields}
    backend_fields = cls.model_fields["backend"].annotation
    if isinstance(fields.get("backend"), dict) and isinstance(backend_fields, type):  # embedded: actor counts only
        fields["backend"] = {k: v for k, v in fields["backend"].items() if k in backend_fields.model_fields}
    return cls.model_validate(fields)


def lead_rows(spec: str, article_rows: list[dict], qmap: dict[str, str], judge: JudgeConfig) -> dict[str, dict]:
    from sumpref.judging.judges import SummaryJudge

    gens, _ = LeadSummarizer(spec).run(article_rows)
    worker = SummaryJudge(judge)
    worker.load()
    judged, _ = worker.run([{**g, "questions": qmap[g["article_id"]]} for g in gens])
    return {r["article_id"]: r for r in judged}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True, help="a run's artifact root")
    ap.add_argument("--out", help="also write the markdown here")
    args = ap.parse_args(argv)
    root = Path(args.root)
    jdir = newest(root, "judged")
    meta = json.loads((jdir / "meta.json").read_text())
    judge = stored_judge(meta["config"]["judge"])
    rows = [r for r in read_shards(jdir, meta["info"]["shards"]) if not failed_reason(r)]
    articles = {r["id"]: r for r in read_table(newest(root, "articles") / "articles.parquet")}
    qdir = newest(root, "questions")
    qrows = read_shards(qdir, json.loads((qdir / "meta.json").read_text())["info"]["shards"])
    qmap = {q["article_id"]: q["questions"] for q in qrows if q["questions"]}
    ids = sorted({r["article_id"] for r in rows} & set(qmap))
    lines = [f"# What the reward prefers: {len(rows)} judged samples of {len(ids)} articles", "",
             f"Run: `{jdir.relative_to(root)}`, judge `{judge.kind}`"
             + (f" (count {judge.count})" if hasattr(judge, "count") else "") + ".", "",
             "| rule | pairs | side | cut at limit | > 2 sentences | copied from start | words | count |",
             "|---|---|---|---|---|---|---|---|"]
    for name, cfg in (("published", PairsConfig(valid_fraction=0.0)),
                      ("format", PairsConfig(valid_fraction=0.0, format_rule=True))):
        pairs, _, _ = build_pairs([{**r, "prompt_text": r.get("prompt_text") or ""} for r in rows], cfg)
        by = {(r["article_id"], r["summary"]): r for r in rows}
        for side in ("chosen", "rejected"):
            picked = [by[(p["article_id"], p[side][1]["content"])] for p in pairs]
            d = describe(picked, articles)
            lines.append(f"| {name} | {len(pairs)} | {side} | {d['cut_at_limit']:.1%} | {d['over_2_sentences']:.1%} | "
                         f"{d['lead_copy_share']:.1%} | {d['words']:.1f} | {d['n_correct']:.2f} |")
    all_d = describe(rows, articles)
    lines.append(f"| (all samples) | - | - | {all_d['cut_at_limit']:.1%} | {all_d['over_2_sentences']:.1%} | "
                 f"{all_d['lead_copy_share']:.1%} | {all_d['words']:.1f} | {all_d['n_correct']:.2f} |")
    arts = [articles[a] for a in ids]
    fmt = PairsConfig(format_rule=True)
    by_article: dict[str, list[dict]] = {}
    for r in rows:
        by_article.setdefault(r["article_id"], []).append(r)
    lines += ["", "| baseline | mean count | words | beats every sample | beats every sample in format | "
              "articles with a sample in format |", "|---|---|---|---|---|---|"]
    for spec in ("lead:2", "lead:3"):
        lead = lead_rows(spec, arts, qmap, judge)
        beats_all = sum(lead[a]["n_correct"] > max(r["n_correct"] for r in by_article[a]) for a in ids)
        in_fmt = {a: [r for r in by_article[a] if format_ok(r, fmt)] for a in ids}
        have = [a for a in ids if in_fmt[a]]
        beats_fmt = sum(lead[a]["n_correct"] > max(r["n_correct"] for r in in_fmt[a]) for a in have)
        lines.append(f"| {spec} | {statistics.mean(lead[a]['n_correct'] for a in ids):.2f} | "
                     f"{statistics.mean(lead[a]['n_words'] for a in ids):.1f} | {beats_all / len(ids):.1%} | "
                     + (f"{beats_fmt / len(have):.1%}" if have else "n/a") + f" | {len(have) / len(ids):.1%} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
