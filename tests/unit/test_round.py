"""The round is one table (`sumpref.stages.round.STEPS`): which stages run, in which order, and
which model each one samples from, trains from, references and merges into."""

from sumpref import stages
from sumpref.artifacts import ArtifactRef
from sumpref.config import RunConfig
from sumpref.stages.round import Round, lineage


def _ref(stage: str, key: str = "k") -> ArtifactRef:
    return ArtifactRef(uri=f"file:///runs/{stage}/{key}", stage=stage, key=key, fingerprint="fp-" + key, rows=1)


def chain(r: Round) -> dict:
    """Each step's spec, given stand-in artifacts of the steps before it (as the flow and the
    library hand them on)."""
    done, specs = {}, {}
    for step in r.steps():
        specs[step.stage] = step.spec(r, done)
        done[step.stage] = _ref(step.stage, specs[step.stage].key)
    return specs


def test_packed_round_runs_reference_logprobs_and_merges_only_when_asked(tmp_path):
    cfg = RunConfig.model_validate({"root": str(tmp_path), "dpo": {"trainer": "packed"}})
    r = Round(cfg, _ref("articles"), _ref("questions"), cfg.policy)
    assert [s.stage for s in r.steps()] == ["samples", "judged", "pairs", "refprobs", "dpo"]
    merging = Round(cfg, _ref("articles"), _ref("questions"), cfg.policy, merge=True)
    assert [s.stage for s in merging.steps()][-1] == "merged"
    specs = chain(r)
    # The same specs as the stages built one by one, in the pipeline's order.
    samples = stages.samples_spec(cfg, r.articles, r.questions, cfg.policy)
    judged = stages.judged_spec(cfg, r.questions, _ref("samples", samples.key), cfg.judge)
    pairs = stages.pairs_spec(cfg, _ref("judged", judged.key))
    refprobs = stages.refprobs_spec(cfg, _ref("pairs", pairs.key), cfg.policy.model)
    dpo = stages.dpo_spec(cfg, _ref("pairs", pairs.key), cfg.policy.model, _ref("refprobs", refprobs.key))
    assert [s.key for s in specs.values()] == [s.key for s in (samples, judged, pairs, refprobs, dpo)]


def test_trl_round_has_no_reference_stage_and_the_nightly_reference_is_its_own(tmp_path):
    cfg = RunConfig.model_validate({"root": str(tmp_path), "dpo": {"trainer": "trl"}})
    assert [s.stage for s in Round(cfg, _ref("articles"), _ref("questions"), cfg.policy).steps()] == [
        "samples", "judged", "pairs", "dpo"]
    packed = cfg.model_copy(update={"dpo": cfg.dpo.model_copy(update={"trainer": "packed"})})
    champion = packed.policy.model_copy(update={"model": str(tmp_path / "champion")})
    specs = chain(Round(packed, _ref("articles"), _ref("questions"), champion, reference="initial-model"))
    assert specs["refprobs"].config["base_model"] == "initial-model"  # nightly.reference: fixed
    assert specs["dpo"].config["base_model"] == specs["samples"].config["policy"]["model"]  # trains from the champion


def test_next_policy_is_the_merged_model_and_tuned_carries_the_adapter(tmp_path):
    cfg = RunConfig.model_validate({"root": str(tmp_path)})
    r = Round(cfg, _ref("articles"), _ref("questions"), cfg.policy, merge=True)
    done = {s: _ref(s) for s in ("samples", "judged", "pairs", "dpo", "merged")}
    assert r.tuned(done).adapter == done["dpo"].child("adapter") and r.tuned(done).model == cfg.policy.model
    assert r.next_policy(done).model == done["merged"].child("model") and r.next_policy(done).adapter is None
    assert r.next_policy({k: v for k, v in done.items() if k != "merged"}) == cfg.policy
    assert sorted(lineage(2, done)) == ["judged_r2", "pairs_r2", "samples_r2"]
