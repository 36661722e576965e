"""One DPO round, defined once: samples -> judged -> pairs -> (refprobs) -> dpo -> (merged).

`STEPS` is the round as an ordered table; each step names its stage and builds that stage's
`StageSpec` from the round's inputs (`Round`) and the artifacts of the steps before it. Two
layers run the same table: `run_round` here (the library, the tests' and benchmarks' runs
without Prefect) and the Prefect round subflow (`flows/round.py`, one task per step). So the
chain, its conditions and which model is trained, referenced and merged are written here only.

- `refprobs` runs for our packed trainer only (TRL's trainer computes the reference itself);
- `merged` runs when `Round.merge` asks for it (the pipeline: every round but the last, so the
  next round samples from, and is referenced against, the merged policy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

from sumpref.artifacts import ArtifactRef
from sumpref.cachekey import StageSpec
from sumpref.config import BackendConfig, RunConfig
from sumpref.stages.dpo import dpo_spec
from sumpref.stages.judged import judged_spec
from sumpref.stages.merged import merged_spec
from sumpref.stages.pairs import pairs_spec
from sumpref.stages.refprobs import refprobs_spec
from sumpref.stages.samples import samples_spec


@dataclass(frozen=True)
class Round:
    """A round's inputs. `policy` samples the summaries and its model is what DPO trains from;
    `reference` is DPO's reference model (None: the policy's model; the nightly's `fixed`
    reference is the initial model); `merge`: merge the adapter into the next round's policy."""

    cfg: RunConfig
    articles: ArtifactRef
    questions: ArtifactRef
    policy: BackendConfig
    reference: str | None = None
    merge: bool = False

    @property
    def reference_model(self) -> str:
        return self.reference or self.policy.model

    def steps(self) -> list[RoundStep]:
        """The steps this round runs, in order."""
        return [s for s in STEPS if s.when(self)]

    def tuned(self, done: dict[str, ArtifactRef]) -> BackendConfig:
        """The policy with the round's adapter: what evaluation calls `tuned`."""
        return self.policy.model_copy(update={"adapter": done["dpo"].child("adapter")})

    def next_policy(self, done: dict[str, ArtifactRef]) -> BackendConfig:
        """The next round's policy: the merged model when this round merged, else this policy."""
        if "merged" not in done:
            return self.policy
        return self.policy.model_copy(update={"model": done["merged"].child("model"), "adapter": None})


@dataclass(frozen=True)
class RoundStep:
    """One stage of the round: `spec(round, done)` is its StageSpec given the artifacts `done` so far;
    `backends(round)` the backends it runs (the Prefect layer resolves their API keys first)."""

    stage: str
    spec: Callable[[Round, dict[str, ArtifactRef]], StageSpec]
    backends: Callable[[Round], tuple] = lambda r: ()
    when: Callable[[Round], bool] = lambda r: True


STEPS: tuple[RoundStep, ...] = (
    RoundStep("samples", lambda r, done: samples_spec(r.cfg, r.articles, r.questions, r.policy),
              backends=lambda r: (r.policy,)),
    RoundStep("judged", lambda r, done: judged_spec(r.cfg, r.questions, done["samples"], r.cfg.judge),
              backends=lambda r: tuple(b for b in [r.cfg.judge.model_backend] if b)),
    RoundStep("pairs", lambda r, done: pairs_spec(r.cfg, done["judged"])),
    RoundStep("refprobs", lambda r, done: refprobs_spec(r.cfg, done["pairs"], r.reference_model),
              when=lambda r: r.cfg.dpo.trainer == "packed"),
    RoundStep("dpo", lambda r, done: dpo_spec(r.cfg, done["pairs"], r.policy.model, done.get("refprobs"))),
    RoundStep("merged", lambda r, done: merged_spec(r.cfg, r.policy.model, done["dpo"]), when=lambda r: r.merge),
)


def run_round(r: Round) -> Iterator[tuple[str, ArtifactRef]]:
    """Run the round's stages in order without Prefect, yielding `(stage, artifact)` as each one
    finishes (finished stages come from the store): `dict(run_round(r))` runs the whole round."""
    done: dict[str, ArtifactRef] = {}
    for step in r.steps():
        done[step.stage] = step.spec(r, done).run()
        yield step.stage, done[step.stage]


def lineage(number: int, done: dict[str, ArtifactRef]) -> dict[str, ArtifactRef]:
    """The round's data artifacts as a report's lineage names them: `samples_r1`, `judged_r1`, `pairs_r1`."""
    return {f"{stage}_r{number}": done[stage] for stage in ("samples", "judged", "pairs")}
