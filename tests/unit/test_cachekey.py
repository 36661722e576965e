"""One cache key per stage: config slice, upstream fingerprints and the source of the stage's
import closure. Editing a module changes exactly the keys of the stages that run it and of
everything downstream of them."""

import pytest

from sumpref import cachekey, stages
from sumpref.artifacts import ArtifactRef
from sumpref.config import RunConfig
from sumpref.evaluation import stages as eval_stages

STAGES = ("articles", "questions", "samples", "judged", "pairs", "refprobs", "dpo", "merged", "eval_base",
          "eval_tuned", "eval")


def _ref(spec) -> ArtifactRef:
    """The artifact a spec would produce. Its fingerprint follows the key: a stage whose inputs
    or code changed is taken to produce different content (the case that must propagate)."""
    return ArtifactRef(uri=spec.uri, stage=spec.stage, key=spec.key, fingerprint="fp-" + spec.key, rows=1)


def pipeline_keys(cfg: RunConfig) -> dict[str, str]:
    """Every stage's key for one packed-trainer round, chained the way the flow chains them."""
    specs = {"articles": stages.articles_spec(cfg)}
    a = _ref(specs["articles"])
    specs["questions"] = stages.questions_spec(cfg, a, cfg.judge)
    q = _ref(specs["questions"])
    specs["samples"] = stages.samples_spec(cfg, a, q, cfg.policy)
    specs["judged"] = stages.judged_spec(cfg, q, _ref(specs["samples"]), cfg.judge)
    specs["pairs"] = stages.pairs_spec(cfg, _ref(specs["judged"]))
    p = _ref(specs["pairs"])
    specs["refprobs"] = stages.refprobs_spec(cfg, p, cfg.policy.model)
    specs["dpo"] = stages.dpo_spec(cfg, p, cfg.policy.model, _ref(specs["refprobs"]))
    d = _ref(specs["dpo"])
    specs["merged"] = stages.merged_spec(cfg, cfg.policy.model, d)
    tuned = cfg.policy.model_copy(update={"adapter": d.child("adapter")})
    e = stages.run_eval_config(cfg, tuned)
    specs["eval_base"] = eval_stages.model_spec(e, e.models[0], a, q)
    specs["eval_tuned"] = eval_stages.model_spec(e, e.models[1], a, q)
    judged = {"base": _ref(specs["eval_base"]), "tuned": _ref(specs["eval_tuned"])}
    specs["eval"] = eval_stages.compare_spec(e, a, q, judged, {"articles": a, "questions": q, "pairs": p}, [d])
    return {name: s.key for name, s in specs.items()}


@pytest.fixture
def cfg(tmp_path) -> RunConfig:
    return RunConfig.model_validate({"root": str(tmp_path), "dpo": {"trainer": "packed"}})


def edit(monkeypatch, module: str) -> None:
    """Simulate an edit of `module`'s source (the file itself is untouched)."""
    real = cachekey._module_source
    monkeypatch.setattr(cachekey, "_module_source", lambda name: real(name) + ("\n# edited\n" if name == module else ""))


@pytest.mark.parametrize("module,changed", [
    ("sumpref.pairs", {"pairs", "refprobs", "dpo", "merged", "eval_base", "eval_tuned", "eval"}),
    ("sumpref.stages.pairs", {"pairs", "refprobs", "dpo", "merged", "eval_tuned", "eval"}),
    ("sumpref.sampling", {"samples", "judged", "pairs", "refprobs", "dpo", "merged", "eval_base", "eval_tuned", "eval"}),
    ("sumpref.judging.judges", {"questions", "samples", "judged", "pairs", "refprobs", "dpo", "merged", "eval_base",
                                "eval_tuned", "eval"}),
    ("sumpref.evaluation.format", {"eval_base", "eval_tuned", "eval"}),
    ("sumpref.data", set(STAGES)),
])
def test_editing_a_module_rekeys_exactly_its_stages_and_downstream(cfg, monkeypatch, module, changed):
    before = pipeline_keys(cfg)
    assert sorted(before) == sorted(STAGES) and len(set(before.values())) == len(STAGES)
    edit(monkeypatch, module)
    after = pipeline_keys(cfg)
    assert {s for s in STAGES if after[s] != before[s]} == changed


def test_keys_are_deterministic_and_follow_the_config_slice(cfg):
    assert pipeline_keys(cfg) == pipeline_keys(cfg)
    beta = pipeline_keys(cfg.model_copy(update={"dpo": cfg.dpo.model_copy(update={"beta": 0.3})}))
    assert {s for s in STAGES if beta[s] != pipeline_keys(cfg)[s]} == {"dpo", "merged", "eval_tuned", "eval"}


def test_closure_holds_every_module_a_stage_runs():
    """The modules the hand-written list used to miss: the stage module itself, the backend base
    and the engines the backend table imports by name, and model resolution."""
    samples = cachekey.import_closure(("sumpref.stages.samples",))
    for m in ("sumpref.stages.samples", "sumpref.sampling", "sumpref.backends.base", "sumpref.backends.vllm_ray",
              "sumpref.backends.openai_http", "sumpref.backends.transformers_backend", "sumpref.model_paths"):
        assert m in samples, m
    evaluation = cachekey.import_closure(("sumpref.evaluation.stages",))
    assert {"sumpref.evaluation.metrics", "sumpref.evaluation.format", "sumpref.evaluation.baselines",
            "sumpref.sentences", "sumpref.judging.judges", "sumpref.pairs", "sumpref.similarity"} <= set(evaluation)
    assert all(m == "sumpref" or m.startswith("sumpref.") for m in samples + evaluation)
    assert "sumpref.training.packed_dpo" not in samples  # only what the stage can run


def test_the_key_is_where_the_library_writes(cfg, tmp_path):
    spec = stages.pairs_spec(cfg, ArtifactRef(uri="file:///x", stage="judged", key="k", fingerprint="f", rows=1))
    assert spec.finished() is None
    ref = cachekey.StageSpec(spec.root, spec.stage, spec.config, spec.upstream, spec.module,
                             lambda out: (out / "data.txt").write_text("x") and {"rows": 1}).run()
    assert ref.key == spec.key and ref.uri == spec.uri and spec.finished() == ref


def test_the_same_run_under_another_root_has_the_same_keys(tmp_path):
    """No absolute path in any key: store paths in a config slice (an adapter, a merged model) count
    by their place in the store, as `{root}/...`."""
    def keys(root):
        cfg = RunConfig.model_validate({"root": str(root), "dpo": {"trainer": "packed"}})
        out = pipeline_keys(cfg)
        merged = cfg.policy.model_copy(update={"model": str(root / "merged" / "k" / "model")})  # round 2's policy
        a = ArtifactRef(uri=(root / "articles" / "k").as_uri(), stage="articles", key="k", fingerprint="fa", rows=1)
        out["samples_r2"] = stages.samples_spec(cfg, a, a, merged).key
        return out

    one, two = keys(tmp_path / "one"), keys(tmp_path / "two")
    assert one == two
    other = RunConfig.model_validate({"root": str(tmp_path / "one"), "dpo": {"trainer": "packed"}})
    elsewhere = other.policy.model_copy(update={"model": str(tmp_path / "elsewhere" / "model")})
    a = ArtifactRef(uri="file:///x", stage="articles", key="k", fingerprint="fa", rows=1)
    assert stages.samples_spec(other, a, a, elsewhere).key != stages.samples_spec(
        other, a, a, other.policy.model_copy(update={"model": str(tmp_path / "one" / "model")})).key


NIGHTLY_STAGES = ("nightly_articles",) + STAGES


def nightly_keys(cfg: RunConfig) -> dict[str, str]:
    """Every stage's key for one nightly round: the round's article sample (`nightly_articles`),
    then the pipeline's stages on it, chained the way `flows.nightly` chains them."""
    from pathlib import Path

    from sumpref import nightly

    spec = nightly.round_articles_spec(cfg, "2026-12-03", 1, ["used-1", "used-2"])
    rcfg = nightly.round_config(cfg, _ref(spec), cfg.policy.model)
    # The sample's file, as the stage would leave it: the articles stage fingerprints its source.
    Path(rcfg.data.source).parent.mkdir(parents=True, exist_ok=True)
    Path(rcfg.data.source).write_text('{"id": "a", "article": "x", "highlights": "y"}\n')
    return {"nightly_articles": spec.key, **pipeline_keys(rcfg)}


@pytest.mark.parametrize("module,changed", [
    # The nightly stage's own module, and modules only its import closure holds: the sample's new
    # key is a new `data.source` for the round's articles stage, so everything after it follows.
    ("sumpref.nightly", set(NIGHTLY_STAGES)),
    ("sumpref.champion", set(NIGHTLY_STAGES)),
    # A module the nightly stage does not import: the sample keeps its key.
    ("sumpref.pairs", {"pairs", "refprobs", "dpo", "merged", "eval_base", "eval_tuned", "eval"}),
    ("sumpref.stages.articles", set(STAGES)),
])
def test_editing_a_module_rekeys_exactly_the_nightly_stages_it_runs_and_downstream(cfg, monkeypatch, module, changed):
    before = nightly_keys(cfg)
    assert sorted(before) == sorted(NIGHTLY_STAGES) and len(set(before.values())) == len(NIGHTLY_STAGES)
    assert "sumpref.champion" in cachekey.import_closure(("sumpref.nightly",))
    edit(monkeypatch, module)
    after = nightly_keys(cfg)
    assert {s for s in NIGHTLY_STAGES if after[s] != before[s]} == changed


def test_no_prefect_task_keeps_a_cache_of_its_own():
    """One cache, the library's: every Prefect task in `tasks/` runs with `NO_CACHE`. (Prefect's
    INPUTS + TASK_SOURCE key hashes only the task's own source: an edit of the library module the
    task calls would not invalidate it.)"""
    import importlib
    import pkgutil

    from prefect import Task
    from prefect.cache_policies import NO_CACHE

    import tasks

    found = {}
    for info in pkgutil.iter_modules(tasks.__path__):
        module = importlib.import_module(f"tasks.{info.name}")
        found.update({f"{info.name}.{name}": t for name, t in vars(module).items()
                      if isinstance(t, Task) and t.__module__ == module.__name__})
    assert {"champion.select_articles", "champion.decide_round", "champion.record_round", "stages.train_dpo"} <= set(found)
    assert {name for name, t in found.items() if t.cache_policy is not NO_CACHE} == set()
