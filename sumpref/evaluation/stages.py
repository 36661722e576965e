"""Evaluation of any set of models on the same articles, questions and judge: four stages.

Each stage is a `cachekey.StageSpec` (key: config slice, upstream fingerprints, source of this
module's import closure; a rerun with the same inputs does no work) and fans its rows out to Ray
actors through `run_shards` (a killed run resumes by shard):

- `eval_articles`: `articles.parquet` (`id, article, highlights, truncated, n_words, orig_words,
  source`) and `drops.parquet`, from any `DataConfig` source, optionally one `split` of it.
- `eval_questions`: shards of `article_id, questions, error` (the judge's questions, once).
- `eval_model` (one per model or extractive baseline, `sumpref.evaluation.baselines`): `gen/`
  shards of greedy summaries (a baseline's cut from the article, optionally to another model's
  word count), `judged/` shards of the same rows with `answers, n_correct, judge_error`. Its key holds the
  model's config (store paths as `{root}/...`, `artifacts.root_relative`) and a fingerprint of its local adapter/model files,
  not its name, so a renamed model reuses its summaries.
- `eval_compare`: `report.json`, `report.md`, `report.png` (per-model metrics, paired comparisons)
  and `summaries_<name>.parquet` per model (`sumpref.evaluation.metrics` computes the metrics); for a
  pipeline run also its training curves, drops and generation accounting.

The pipeline's evaluation is these stages too (`sumpref.stages.evaluation`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sumpref.artifacts import ArtifactRef, atomic_write_text, read_table, write_table
from sumpref.backends.base import SamplingParams
from sumpref.cachekey import StageSpec
from sumpref.evaluation.config import EvalFlowConfig, EvalModel
from sumpref.fanout import read_shards, run_shards
from sumpref.pairs import failed_reason
from sumpref.stages.shards import chunks, judge_resources, judge_shard_size, question_map, resources


def _counts(reasons: list[str]) -> dict[str, int]:
    return {r: reasons.count(r) for r in sorted(set(reasons))}


def local_files_fingerprint(path: str | None, full_bytes_below: int = 1 << 26) -> str | None:
    """Content of a local adapter or model folder: full hashes of files under 64 MiB, name and
    size of bigger ones (weights of a merged 7B model are not re-read on every run). None if
    `path` is not a local folder (hub id, embedded model, API model)."""
    if not path or not Path(path).is_dir():
        return None
    h = hashlib.sha256()
    for f in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        size = f.stat().st_size
        h.update(f"{f.relative_to(path).as_posix()}:{size}".encode())
        if size < full_bytes_below:
            h.update(f.read_bytes())
    return h.hexdigest()[:20]


def articles_spec(cfg: EvalFlowConfig) -> StageSpec:
    """The evaluation articles: loaded, deduplicated and truncated as a pipeline run does."""
    from sumpref.data import local_files, source_fingerprint

    def produce(out: Path) -> dict:
        from transformers import AutoTokenizer

        from sumpref.data import load_articles, truncate_articles
        from sumpref.model_paths import resolve_model

        res = load_articles(cfg.data)
        rows = res.rows
        if cfg.split is not None:
            keep = _ids_in_split(cfg, cfg.split)
            rows = [r for r in rows if r["id"] in keep]
        rows = rows[:cfg.num_articles] if cfg.num_articles else rows
        if not rows:
            raise ValueError(f"data.source {cfg.data.source!r}" + (f" with split {cfg.split!r}" if cfg.split else "")
                             + " left no usable article to evaluate")
        truncate_articles(rows, AutoTokenizer.from_pretrained(resolve_model(cfg.tokenizer)), cfg.data.max_article_tokens)
        write_table(out / "articles.parquet", rows)
        write_table(out / "drops.parquet", res.drops or _empty_drops())
        return {"rows": len(rows), "drops": res.drop_counts(), "truncated": sum(r["truncated"] for r in rows)}

    if cfg.split is not None and local_files(cfg.data.source) is None:
        raise ValueError(f"split: {cfg.split!r} filters a local file's `split` column; data.source {cfg.data.source!r} "
                         "is a hub dataset (choose its split with data.split)")
    config = {"data": cfg.data.model_dump(), "files": source_fingerprint(cfg.data), "split": cfg.split,
              "num_articles": cfg.num_articles, "tokenizer": cfg.tokenizer}
    return StageSpec(cfg.root, "eval_articles", config, [], __name__, produce)


def _ids_in_split(cfg: EvalFlowConfig, split: str) -> set[str]:
    from sumpref.data import _read_local, local_files

    raw = _read_local(local_files(cfg.data.source), cfg.data, drops=[])
    return {str(r.get(cfg.data.id_column)) for r in raw if r.get("split") == split}


def _empty_drops():
    import pyarrow as pa

    return pa.table({k: pa.array([], pa.string()) for k in ("source", "id", "reason", "detail")})


def questions_spec(cfg: EvalFlowConfig, articles: ArtifactRef) -> StageSpec:
    """The judge's questions for every article, written once and shared by every model."""
    from sumpref.judging.judges import QuestionWriter

    judge = cfg.judge

    def produce(out: Path) -> dict:
        rows = read_table(articles.path / "articles.parquet")
        shards = chunks(rows, judge_shard_size(judge, 64))
        info = run_shards(out, shards, QuestionWriter(judge, cfg.seed), desc="eval questions", **judge_resources(judge))
        qrows = read_shards(out, len(shards))
        info.update(rows=len(qrows), drops=_counts([r["error"] for r in qrows if r["error"]]))
        return info

    return StageSpec(cfg.root, "eval_questions", {"judge": judge.model_dump(), "seed": cfg.seed}, [articles], __name__,
                     produce)


def eval_rows(cfg: EvalFlowConfig, articles: ArtifactRef, qmap: dict[str, str]) -> list[dict]:
    """The articles evaluated: those with questions, and of `cfg.split` where the file has splits (a
    pipeline run's articles.parquet holds both; the evaluation flow's articles stage already kept one)."""
    return [r for r in read_table(articles.path / "articles.parquet")
            if r["id"] in qmap and (cfg.split is None or r.get("split", cfg.split) == cfg.split)]


def model_spec(cfg: EvalFlowConfig, model: EvalModel, articles: ArtifactRef, questions: ArtifactRef,
               match: ArtifactRef | None = None) -> StageSpec:
    """One model's (or extractive baseline's) summaries of every evaluated article, judged.

    `match`: the judged artifact of the model named by `model.match_length`, whose word counts cut
    this baseline's summaries article by article."""
    from sumpref.evaluation.baselines import LeadSummarizer
    from sumpref.judging.judges import SummaryJudge
    from sumpref.sampling import Summarizer

    b = model.backend
    if (match is None) != (model.match_length is None):
        raise ValueError(f"models[{model.name}].match_length: {model.match_length!r} needs that model's judged artifact")

    def produce(out: Path) -> dict:
        qmap = question_map(questions)
        rows = eval_rows(cfg, articles, qmap)
        if match is not None:
            lengths = {r["article_id"]: r["n_words"] for r in judged_rows(match) if not failed_reason(r)}
            rows = [{**r, "match_words": lengths[r["id"]]} for r in rows if r["id"] in lengths]
        if model.extract is not None:
            worker, res, size = LeadSummarizer(model.extract), dict(replicas=1, num_cpus=1, num_gpus=0), 256
        else:
            params = SamplingParams(n=1, temperature=model.temperature, top_p=model.top_p,
                                    max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
            worker, res, size = Summarizer(b, params, cfg.stop_sentences), resources(b), max(1, b.batch_size)
        shards = chunks(rows, size)
        gen = run_shards(out / "gen", shards, worker, desc=f"eval summaries ({model.name})", **res)
        gens = [{**g, "questions": qmap[g["article_id"]]} for g in read_shards(out / "gen", len(shards))]
        jshards = chunks(gens, judge_shard_size(cfg.judge, 256))
        jud = run_shards(out / "judged", jshards, SummaryJudge(cfg.judge), desc=f"eval judging ({model.name})",
                         **judge_resources(cfg.judge))
        return {"rows": len(gens), "shards": len(jshards), "generation": gen["backend"], "judging": jud["backend"]}

    if model.extract is not None:
        what = {"extract": model.extract, "match_length": model.match_length}
    else:
        what = {"backend": b.model_dump(), "files": {"model": local_files_fingerprint(b.model),
                                              "adapter": local_files_fingerprint(b.adapter)},
                "temperature": model.temperature, "top_p": model.top_p, "max_new_tokens": cfg.max_new_tokens,
                "stop_sentences": cfg.stop_sentences}
    slice_ = {**what, "split": cfg.split, "seed": cfg.seed, "judge": cfg.judge.model_dump()}
    upstream = [articles, questions] + ([match] if match is not None else [])
    return StageSpec(cfg.root, "eval_model", slice_, upstream, __name__, produce)


def judged_rows(ref: ArtifactRef) -> list[dict]:
    return read_shards(ref.path / "judged", ref.meta()["info"]["shards"])


def compare_spec(cfg: EvalFlowConfig, articles: ArtifactRef, questions: ArtifactRef, judged: dict[str, ArtifactRef],
                 run: dict[str, ArtifactRef] | None = None, adapters: list[ArtifactRef] | None = None) -> StageSpec:
    """Metrics per model and the paired comparisons: report.json/md/png, summaries_<model>.parquet.

    A pipeline run passes its upstream stages (`run`: their drops and generation accounting go into
    the report) and its DPO `adapters` (training curves)."""
    from sumpref.evaluation.metrics import compare_models, plot_comparison, render_comparison

    run, adapters = run or {}, adapters or []

    def produce(out: Path) -> dict:
        qmap = question_map(questions)
        arts = {r["id"]: r for r in eval_rows(cfg, articles, qmap)}
        rows, drops = {}, {}
        for name, ref in judged.items():
            all_rows = judged_rows(ref)
            drops[name] = _counts([failed_reason(r) for r in all_rows if failed_reason(r)])
            rows[name] = [r for r in all_rows if not failed_reason(r)]  # no output is no evidence either way
            write_table(out / f"summaries_{name}.parquet", all_rows)
        report = compare_models(rows, arts, cfg.baseline, cfg.pairs, cfg.max_words, cfg.bootstrap_samples, cfg.seed,
                                cfg.pairs_compared())
        infos = {name: ref.meta()["info"] for name, ref in run.items()}
        q_drops = questions.meta()["info"].get("drops", {})
        report.update(
            name=cfg.name, data_source=cfg.data.source + (f" (split {cfg.split})" if cfg.split else ""),
            judge=cfg.judge.label,
            drops={**{n: i["drops"] for n, i in infos.items() if i.get("drops")},
                   **({"(questions)": q_drops} if q_drops else {}), **drops},
            model_specs={m.name: _describe(m) for m in cfg.models},
            training=[a.meta()["info"] for a in adapters],
            accounting={**{n: i["backend"] for n, i in infos.items() if "backend" in i},
                        **{f"eval {n} {part}": ref.meta()["info"][part] for n, ref in judged.items()
                           for part in ("generation", "judging")}},
            artifacts={"articles": articles.uri, "questions": questions.uri, **{n: r.uri for n, r in run.items()},
                       **{f"adapter_round{i}": a.uri + "/adapter" for i, a in enumerate(adapters, 1)},
                       **{n: r.uri for n, r in judged.items()}})
        plot_comparison(report, out / "report.png")
        report["plot"] = "report.png"
        atomic_write_text(out / "report.json", json.dumps(report, indent=2, default=str))
        atomic_write_text(out / "report.md", render_comparison(report))
        return {"rows": report["n_articles"],
                "win_rates": {c: v["win_rate"]["value"] for c, v in report["comparisons"].items()}}

    slice_ = {"name": cfg.name, "baseline": cfg.baseline, "compared": cfg.pairs_compared(), "pairs": cfg.pairs.model_dump(),
              "max_words": cfg.max_words, "bootstrap_samples": cfg.bootstrap_samples, "seed": cfg.seed,
              "split": cfg.split, "models": list(judged), "specs": {m.name: _describe(m) for m in cfg.models},
              "run": sorted(run)}
    upstream = [articles, questions, *judged.values(), *run.values(), *adapters]
    return StageSpec(cfg.root, "eval_compare", slice_, upstream, __name__, produce)


def model_stage(cfg: EvalFlowConfig, model: EvalModel, articles: ArtifactRef, questions: ArtifactRef,
                match: ArtifactRef | None = None) -> ArtifactRef:
    return model_spec(cfg, model, articles, questions, match).run()


def compare_stage(cfg: EvalFlowConfig, articles: ArtifactRef, questions: ArtifactRef, judged: dict[str, ArtifactRef],
                  run: dict[str, ArtifactRef] | None = None, adapters: list[ArtifactRef] | None = None) -> ArtifactRef:
    return compare_spec(cfg, articles, questions, judged, run, adapters).run()


def _describe(m: EvalModel) -> str:
    if m.extract is not None:
        return f"extractive baseline {m.extract}" + (f", cut to {m.match_length}'s length" if m.match_length else "")
    b = m.backend
    s = f"{b.backend}: {b.model}" + (f" + adapter {b.adapter}" if b.adapter else "")
    return s + (f", temperature {m.temperature}" if m.temperature else ", greedy")
