"""Stage `eval`: greedy summaries of the held-out articles from every evaluated model, judged,
then the report (`sumpref.report`).

Models: `base` (the initial policy), `tuned` (the last adapter) and, only when the config asks
for it, `eval.api_baseline` (a paid API model such as GPT-4o). A summary that was never generated
or never judged is left out of the metrics and counted (`evaluate.failed_reason`).
Out: `gen_{model}/`, `judged_{model}/` shards, `summaries_{model}.parquet`, `report.{json,md,png}`.
"""

from __future__ import annotations

from pathlib import Path

from sumpref.artifacts import ArtifactRef
from sumpref.backends.base import SamplingParams
from sumpref.cachekey import StageSpec
from sumpref.config import BackendConfig, JudgeConfig, RunConfig
from sumpref.raygen import RowSlice, read_shards, run_shards
from sumpref.stages.shards import chunks, counts, file_rows, judge_resources, question_map, resources, slices


def eval_models(cfg: RunConfig, tuned: BackendConfig) -> dict[str, BackendConfig]:
    """The models evaluated: base, tuned, and the API baseline when `eval.api_baseline` is set."""
    extra = {cfg.eval.api_baseline.model: cfg.eval.api_baseline} if cfg.eval.api_baseline is not None else {}
    return {"base": cfg.policy, "tuned": tuned, **extra}


def eval_spec(cfg: RunConfig, articles: ArtifactRef, eval_questions: ArtifactRef, tuned: BackendConfig,
              adapters: list[ArtifactRef], upstream: dict[str, ArtifactRef]) -> StageSpec:
    judge = cfg.eval.judge or cfg.judge
    models = eval_models(cfg, tuned)

    def produce(out: Path) -> dict:
        from sumpref.report import assemble_report, write_report

        qmap = question_map(eval_questions)
        rows = file_rows(articles, "articles.parquet", lambda r: r["split"] == "eval" and r["id"] in qmap, ["id", "split"])
        judged, accounting, eval_drops = {}, {}, {}
        for name, bcfg in models.items():
            kept, failed, acct = _generate_and_judge(cfg, judge, name, bcfg, rows, qmap, out)
            judged[name] = kept
            eval_drops[f"eval_{name}"] = counts([{"reason": f} for f in failed])
            accounting.update(acct)
        judge_name = judge.backend.model if judge.kind == "llm" else f"embedded {judge.kind}"
        report = assemble_report(cfg, judge_name, len(rows), judged, adapters, upstream, eval_drops, accounting)
        write_report(out, report, judged)
        return {"rows": len(rows), "win_rate": report["win_rates"]["tuned vs base"]["value"]}

    config = {"name": cfg.name, "eval": cfg.eval.model_dump(), "judge": judge.model_dump(), "pairs": cfg.pairs.model_dump(),
              "models": {m: b.model_dump() for m, b in models.items()}}
    return StageSpec(cfg.root, "eval", config, [articles, eval_questions, *adapters, *upstream.values()], __name__, produce)


def _generate_and_judge(cfg: RunConfig, judge: JudgeConfig, name: str, bcfg: BackendConfig, rows: list[dict] | RowSlice,
                        qmap: dict[str, str], out: Path) -> tuple[list[dict], list[str], dict]:
    """One model's greedy summaries, judged: (rows that count, reasons of those left out, accounting)."""
    from sumpref.evaluate import failed_reason
    from sumpref.judges import SummaryJudge
    from sumpref.sampling import Summarizer

    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=cfg.eval.max_new_tokens, seed=cfg.eval.seed)
    gdir = out / f"gen_{name}"
    shards = slices(rows, max(1, bcfg.batch_size))
    info = run_shards(gdir, shards, Summarizer(bcfg, params), desc=f"eval summaries ({name})", **resources(bcfg))
    gens = [{**g, "questions": qmap[g["article_id"]]} for g in read_shards(gdir, len(shards))]
    jdir = out / f"judged_{name}"
    jshards = chunks(gens, 256)
    jinfo = run_shards(jdir, jshards, SummaryJudge(judge), desc=f"eval judging ({name})", **judge_resources(judge))
    judged = read_shards(jdir, len(jshards))
    failed = [reason for r in judged if (reason := failed_reason(r))]
    kept = [r for r in judged if not failed_reason(r)]  # no output is no evidence either way
    return kept, failed, {f"eval_{name}_generation": info["backend"], f"eval_{name}_judging": jinfo["backend"]}


def eval_stage(cfg: RunConfig, articles: ArtifactRef, eval_questions: ArtifactRef, tuned: BackendConfig,
               adapters: list[ArtifactRef], upstream: dict[str, ArtifactRef]) -> ArtifactRef:
    return eval_spec(cfg, articles, eval_questions, tuned, adapters, upstream).run()
