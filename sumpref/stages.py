"""Pipeline stages: one function each, config slice + upstream refs in, `ArtifactRef` out.

Every stage is content-addressed through `run_stage`: same inputs -> the existing artifact,
with no work. Generation stages shard their rows and fan the shards out to Ray through
`run_shards`, so a killed run resumes at shard granularity.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
from pathlib import Path

from sumpref.artifacts import ArtifactRef, atomic_write_text, read_table, run_stage, write_table
from sumpref.backends.base import SamplingParams
from sumpref.config import BackendConfig, JudgeConfig, RunConfig
from sumpref.raygen import actor_runtime_env, read_shards, run_shards

log = logging.getLogger("sumpref")

# The library modules whose code decides each stage's output: their source is part of the stage's
# cache key, so editing (say) the preference rule reruns the pairs stage and what follows.
STAGE_MODULES = {
    "articles": ("sumpref.data",),
    "questions": ("sumpref.judges", "sumpref.mcq", "sumpref.prompts", "sumpref.cloze", "sumpref.constrained"),
    "samples": ("sumpref.sampling", "sumpref.prompts", "sumpref.backends.transformers_backend",
                "sumpref.backends.prefix_sampling"),
    "judged": ("sumpref.judges", "sumpref.mcq", "sumpref.prompts", "sumpref.cloze", "sumpref.constrained"),
    "pairs": ("sumpref.pairs",),
    "refprobs": ("sumpref.training.refprobs", "sumpref.training.packing"),
    "dpo": ("sumpref.training.dpo", "sumpref.training.packed_dpo", "sumpref.training.packing", "sumpref.training.losses"),
    "merged": (),
    "eval": ("sumpref.evaluate", "sumpref.sampling", "sumpref.judges", "sumpref.prompts", "sumpref.cloze",
             "sumpref.pairs", "sumpref.mcq"),
}


@functools.lru_cache(maxsize=None)
def code_version(stage: str) -> str:
    """sha256 over the source of the modules in `STAGE_MODULES[stage]`."""
    h = hashlib.sha256(stage.encode())
    for name in STAGE_MODULES[stage]:
        spec = importlib.util.find_spec(name)
        h.update(Path(spec.origin).read_bytes())
    return h.hexdigest()[:12]


def _chunks(rows: list, size: int) -> list[list]:
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def _counts(rows: list[dict], key: str = "reason") -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r[key]] = out.get(r[key], 0) + 1
    return dict(sorted(out.items()))


def _judge_resources(j: JudgeConfig) -> dict:
    if j.kind != "llm":
        return dict(replicas=1, num_cpus=1, num_gpus=0)
    return _resources(j.backend)


def _resources(b: BackendConfig) -> dict:
    return dict(replicas=b.replicas, num_cpus=b.num_cpus, num_gpus=b.num_gpus, accelerator_type=b.accelerator_type,
                runtime_env=actor_runtime_env(b))


def load_stage(cfg: RunConfig) -> ArtifactRef:
    """Articles with the train/eval split, truncation flags and drop reasons."""
    from sumpref.data import assign_split, load_articles, truncate_articles

    def produce(out: Path) -> dict:
        from transformers import AutoTokenizer

        from sumpref.models import resolve_model

        res = load_articles(cfg.data)
        truncate_articles(res.rows, AutoTokenizer.from_pretrained(resolve_model(cfg.policy.model)), cfg.data.max_article_tokens)
        assign_split(res.rows, cfg.data.eval_fraction, cfg.data.min_eval_articles, cfg.data.seed)
        write_table(out / "articles.parquet", res.rows)
        write_table(out / "drops.parquet", res.drops or [], schema=None if res.drops else _drop_schema())
        return {"rows": len(res.rows), "drops": res.drop_counts(), "truncated": sum(r["truncated"] for r in res.rows),
                "train": sum(r["split"] == "train" for r in res.rows), "eval": sum(r["split"] == "eval" for r in res.rows)}

    from sumpref.data import source_fingerprint

    return run_stage(cfg.root, "articles", {"data": cfg.data.model_dump(), "tokenizer": cfg.policy.model,
                                            "files": source_fingerprint(cfg.data)}, [], code_version("articles"), produce)


def _drop_schema():
    import pyarrow as pa

    return pa.schema([("source", pa.string()), ("id", pa.string()), ("reason", pa.string()), ("detail", pa.string())])


def questions_stage(cfg: RunConfig, articles: ArtifactRef, judge: JudgeConfig, split: str | None = None) -> ArtifactRef:
    """Questions per article (all articles, or one split); unparseable articles kept with an error."""
    from sumpref.judges import QuestionWriter

    def produce(out: Path) -> dict:
        rows = [r for r in read_table(articles.path / "articles.parquet") if split is None or r["split"] == split]
        shards = _chunks(rows, 64 if judge.kind == "cloze" else judge.backend.batch_size * 4)
        info = run_shards(out, shards, QuestionWriter(judge, cfg.sampling.seed), desc="questions", **_judge_resources(judge))
        qrows = read_shards(out, len(shards))
        info.update(rows=len(qrows), drops=_counts([r for r in qrows if r["error"]], "error"))
        return info

    return run_stage(cfg.root, "questions", {"judge": judge.model_dump(), "split": split, "seed": cfg.sampling.seed},
                     [articles], code_version("questions"), produce)


def sample_stage(cfg: RunConfig, articles: ArtifactRef, questions: ArtifactRef, policy: BackendConfig) -> ArtifactRef:
    """`sampling.n` summaries per training article that has questions."""
    from sumpref.sampling import Summarizer

    def produce(out: Path) -> dict:
        ok = {q["article_id"] for q in _question_rows(questions) if q["questions"]}
        train = [r for r in read_table(articles.path / "articles.parquet") if r["split"] == "train"]
        rows = [r for r in train if r["id"] in ok]
        s = cfg.sampling
        params = SamplingParams(n=s.n, temperature=s.temperature, top_p=s.top_p, max_new_tokens=s.max_new_tokens, seed=s.seed)
        shards = _chunks(rows, s.shard_size)
        info = run_shards(out, shards, Summarizer(policy, params), desc="sampling", **_resources(policy))
        info.update(rows=sum(len(sh) for sh in shards) * s.n, drops={"no_questions": len(train) - len(rows)})
        return info

    return run_stage(cfg.root, "samples", {"policy": policy.model_dump(), "sampling": cfg.sampling.model_dump()},
                     [articles, questions], code_version("samples"), produce)


def _question_rows(questions: ArtifactRef) -> list[dict]:
    return read_shards(questions.path, questions.meta()["info"]["shards"])


def judge_stage(cfg: RunConfig, questions: ArtifactRef, samples: ArtifactRef, judge: JudgeConfig) -> ArtifactRef:
    """Answers and scores for every sampled summary."""
    from sumpref.judges import SummaryJudge

    def produce(out: Path) -> dict:
        qmap = {q["article_id"]: q["questions"] for q in _question_rows(questions) if q["questions"]}
        rows = [{**r, "questions": qmap[r["article_id"]]} for r in read_shards(samples.path, samples.meta()["info"]["shards"])
                if r["article_id"] in qmap]
        size = 256 if judge.kind == "cloze" else judge.backend.batch_size * 4
        shards = _chunks(rows, size)
        info = run_shards(out, shards, SummaryJudge(judge), desc="judging", **_judge_resources(judge))
        judged = read_shards(out, len(shards))
        info.update(rows=len(judged), drops=_counts([r for r in judged if r["judge_error"]], "judge_error"))
        return info

    return run_stage(cfg.root, "judged", {"judge": judge.model_dump()}, [questions, samples], code_version("judged"), produce)


def _judged_rows(ref: ArtifactRef) -> list[dict]:
    rows = read_shards(ref.path, ref.meta()["info"]["shards"])
    for r in rows:  # published: empty judge output drops the row
        if r.get("judge_error") == "no_judge_output":
            r["drop_reason"] = "no_judge_output"
    return rows


def pairs_stage(cfg: RunConfig, judged: ArtifactRef) -> ArtifactRef:
    from sumpref.pairs import build_pairs

    def produce(out: Path) -> dict:
        pairs, drops, counts = build_pairs(_judged_rows(judged), cfg.pairs)
        write_table(out / "train.parquet", [p for p in pairs if p["split"] == "train"] or _empty_pairs())
        write_table(out / "valid.parquet", [p for p in pairs if p["split"] == "valid"] or _empty_pairs())
        write_table(out / "drops.parquet", drops or _empty_drops())
        return {"rows": len(pairs), "drops": {k[len("dropped_"):]: v for k, v in counts.items() if k.startswith("dropped_")},
                **{k: v for k, v in counts.items() if not k.startswith("dropped_")}}

    return run_stage(cfg.root, "pairs", {"pairs": cfg.pairs.model_dump()}, [judged], code_version("pairs"), produce)


def _empty_pairs():
    import pyarrow as pa

    msg = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    return pa.table({"article_id": pa.array([], pa.string()), "split": pa.array([], pa.string()),
                     "prompt": pa.array([], msg), "chosen": pa.array([], msg), "rejected": pa.array([], msg),
                     "chosen_correct": pa.array([], pa.int64()), "rejected_correct": pa.array([], pa.int64()),
                     "chosen_words": pa.array([], pa.int64()), "rejected_words": pa.array([], pa.int64())})


def _empty_drops():
    import pyarrow as pa

    return pa.table({"article_id": pa.array([], pa.string()), "sample_idx": pa.array([], pa.int64()),
                     "reason": pa.array([], pa.string())})


def refprobs_stage(cfg: RunConfig, pairs: ArtifactRef, base_model: str) -> ArtifactRef:
    """Reference log-probs of every chosen/rejected, computed once (shared-prompt packing) and
    stored as columns next to the training pairs, so training never runs the reference model."""
    from sumpref.models import resolve_model
    from sumpref.training.refprobs import compute_reference_logps

    def produce(out: Path) -> dict:
        compute_reference_logps(str(pairs.path / "train.parquet"), resolve_model(base_model), str(out / "train.parquet"),
                                max_length=cfg.dpo.max_length, num_replicas=cfg.dpo.ref_replicas, use_gpu=cfg.dpo.use_gpu or None,
                                dtype="bfloat16" if cfg.dpo.bf16 else "auto")
        rows = read_table(out / "train.parquet")
        bad = sum(1 for r in rows if r["ref_chosen_logp"] != r["ref_chosen_logp"])  # NaN: could not be scored
        return {"rows": len(rows), "drops": {"unscorable": bad} if bad else {}}

    return run_stage(cfg.root, "refprobs", {"base_model": base_model, "max_length": cfg.dpo.max_length,
                                            "bf16": cfg.dpo.bf16}, [pairs], code_version("refprobs"), produce)


def train_stage(cfg: RunConfig, pairs: ArtifactRef, base_model: str, refprobs: ArtifactRef | None = None) -> ArtifactRef:
    """LoRA adapter trained with DPO on the pairs; `base_model` is also the reference.

    `dpo.trainer`: `trl` (TRL's DPOTrainer) or `packed` (ours; needs the `refprobs` artifact).
    """
    from sumpref.models import resolve_model

    def produce(out: Path) -> dict:
        model = resolve_model(base_model)
        if cfg.dpo.trainer == "packed":
            if refprobs is None:
                raise ValueError("dpo.trainer 'packed' needs the reference log-prob stage output")
            from sumpref.training.packed_dpo import train_packed_dpo
            from sumpref.training.ray_train import train_packed_dpo_ray

            data = str(refprobs.path / "train.parquet")
            if cfg.dpo.num_workers > 1:
                train_packed_dpo_ray(data, model, str(out / "adapter"), cfg.dpo)
            else:
                train_packed_dpo(data, model, str(out / "adapter"), cfg.dpo)
            metrics = json.loads((out / "adapter" / "metrics.json").read_text())
            metrics.update(pairs_train=metrics.get("pairs", refprobs.rows), pairs_valid=0,
                           train_loss=(metrics.get("last") or {}).get("loss"))
            return {"rows": refprobs.rows, **metrics}
        from sumpref.training.dpo import launch_training

        train = read_table(pairs.path / "train.parquet")
        valid = read_table(pairs.path / "valid.parquet")
        metrics = launch_training(train, valid, model, str(out), cfg.dpo)
        return {"rows": len(train), **{k: v for k, v in metrics.items() if k != "log_history"}}

    upstream = [pairs] + ([refprobs] if refprobs is not None else [])
    return run_stage(cfg.root, "dpo", {"dpo": cfg.dpo.model_dump(), "base_model": base_model}, upstream,
                     code_version("dpo"), produce)


def merge_stage(cfg: RunConfig, base_model: str, adapter: ArtifactRef) -> ArtifactRef:
    """Base + adapter merged into a plain model directory: the next round's policy and reference."""
    from sumpref.models import resolve_model

    def produce(out: Path) -> dict:
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = resolve_model(base_model)
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(path), str(adapter.path / "adapter"))
        model.merge_and_unload().save_pretrained(str(out / "model"))
        AutoTokenizer.from_pretrained(path).save_pretrained(str(out / "model"))
        return {"rows": 0}

    return run_stage(cfg.root, "merged", {"base_model": base_model}, [adapter], code_version("merged"), produce)


def _eval_failed(row: dict) -> bool:
    """A summary that was never generated, or never judged, is left out of the metrics (and counted)."""
    err = str(row.get("judge_error") or "")
    return bool(row.get("gen_error")) or err == "no_judge_output" or err.startswith("generation_error")


def reference_models(cfg: RunConfig) -> dict[str, BackendConfig]:
    """Extra evaluation baselines: `eval.openai_model` (e.g. GPT-4o) when an OpenAI key is set."""
    import os

    if not cfg.eval.openai_model or not os.environ.get("OPENAI_API_KEY"):
        return {}
    return {cfg.eval.openai_model: BackendConfig(backend="openai", model=cfg.eval.openai_model, base_url=cfg.eval.openai_base_url,
                                                 batch_size=16, max_concurrency=8)}


def eval_stage(cfg: RunConfig, articles: ArtifactRef, eval_questions: ArtifactRef, tuned: BackendConfig,
               adapters: list[ArtifactRef], upstream_refs: dict[str, ArtifactRef]) -> ArtifactRef:
    """Greedy summaries of held-out articles from base and tuned, judged; report.md/json/png."""
    from sumpref.evaluate import model_metrics, plot_report, render_report, win_rate
    from sumpref.judges import SummaryJudge
    from sumpref.sampling import Summarizer

    judge = cfg.eval.judge or cfg.judge
    models = {"base": cfg.policy, "tuned": tuned, **reference_models(cfg)}

    def produce(out: Path) -> dict:
        qmap = {q["article_id"]: q["questions"] for q in _question_rows(eval_questions) if q["questions"]}
        rows = [r for r in read_table(articles.path / "articles.parquet") if r["split"] == "eval" and r["id"] in qmap]
        params = SamplingParams(n=1, temperature=0.0, max_new_tokens=cfg.eval.max_new_tokens, seed=cfg.eval.seed)
        judged, accounting, eval_drops = {}, {}, {}
        for name, bcfg in models.items():
            gdir = out / f"gen_{name}"
            shards = _chunks(rows, max(1, bcfg.batch_size))
            info = run_shards(gdir, shards, Summarizer(bcfg, params), desc=f"eval summaries ({name})", **_resources(bcfg))
            gens = [{**g, "questions": qmap[g["article_id"]]} for g in read_shards(gdir, len(shards))]
            jdir = out / f"judged_{name}"
            jshards = _chunks(gens, 256)
            jinfo = run_shards(jdir, jshards, SummaryJudge(judge), desc=f"eval judging ({name})", **_judge_resources(judge))
            rows_m = read_shards(jdir, len(jshards))
            failed = [r.get("judge_error") or "generation_error" for r in rows_m if _eval_failed(r)]
            eval_drops[f"eval_{name}"] = _counts([{"reason": f} for f in failed])
            judged[name] = [r for r in rows_m if not _eval_failed(r)]  # no output is no evidence either way
            accounting[f"eval_{name}_generation"] = info["backend"]
            accounting[f"eval_{name}_judging"] = jinfo["backend"]
        report = {
            "run_name": cfg.name, "eval_articles": len(rows), "judge": judge.kind if judge.kind == "cloze" else judge.backend.model,
            "models": {m: model_metrics(judged[m], cfg.eval.max_words, cfg.eval.bootstrap_samples, cfg.eval.seed) for m in models},
            "win_rates": {f"{m} vs base": win_rate(judged[m], judged["base"], cfg.pairs, cfg.eval.bootstrap_samples, cfg.eval.seed)
                          for m in models if m != "base"},
            "training": [a.meta()["info"] for a in adapters],
            "drops": {**{name: ref.meta()["info"].get("drops", {}) for name, ref in upstream_refs.items()}, **eval_drops},
            "accounting": {**{name: ref.meta()["info"].get("backend", {}) for name, ref in upstream_refs.items()
                              if "backend" in ref.meta()["info"]}, **accounting},
            "artifacts": {**{name: ref.uri for name, ref in upstream_refs.items()}, **{f"adapter_round{i}": a.uri + "/adapter" for i, a in enumerate(adapters, 1)}},
        }
        for name in models:
            write_table(out / f"summaries_{name}.parquet", judged[name])
        plot_report(report, out / "report.png")
        report["plot"] = "report.png"
        atomic_write_text(out / "report.json", json.dumps(report, indent=2, default=str))
        atomic_write_text(out / "report.md", render_report(report))
        return {"rows": len(rows), "win_rate": report["win_rates"]["tuned vs base"]["value"]}

    return run_stage(cfg.root, "eval", {"name": cfg.name, "eval": cfg.eval.model_dump(), "judge": judge.model_dump(),
                                        "pairs": cfg.pairs.model_dump(),
                                        "models": {m: b.model_dump() for m, b in models.items()}},
                     [articles, eval_questions, *adapters, *upstream_refs.values()], code_version("eval"), produce)
