"""One DPO round as a Prefect subflow (`round-N` in the UI): the library's round steps
(`sumpref.stages.round.STEPS`), each run by its task (`tasks.stages.ROUND_TASKS`).

`flows.full_pipeline` (so also `flows.iterative_dpo`) and `flows.nightly` call it; the tests'
runs without Prefect run the same steps through `sumpref.stages.run_round`. The subflow caches
nothing of its own: its tasks return finished artifacts from the store in a `Cached` state, so a
rerun (or the retry of a failed parent, which starts a fresh subflow run) costs no recomputation.
"""

from __future__ import annotations

from prefect import flow

from sumpref.artifacts import ArtifactRef
from sumpref.stages.round import Round
from tasks.stages import ROUND_TASKS


@flow(name="sumpref-round", flow_run_name="round-{number}")
def dpo_round(r: Round, number: int = 1) -> dict[str, ArtifactRef]:
    """Run round `number`'s steps in order; returns each stage's artifact by stage name."""
    done: dict[str, ArtifactRef] = {}
    for step in r.steps():
        done[step.stage] = ROUND_TASKS[step.stage](step.spec(r, done), step.backends(r)).result()
    return done
