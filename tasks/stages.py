"""Prefect tasks: one library call each. Retries and timeouts live on the decorator.

There is one cache, the library's: every stage's artifact lives at `{root}/{stage}/{key}/`, with
`key` from `sumpref.cachekey` (the stage's config slice, upstream fingerprints and the source of
every module in the stage's import closure; not the run id). So the tasks do no Prefect caching
of their own (`NO_CACHE`): a task asks the library for its stage's spec and, when the finished
artifact is already in the store, returns it in a `Cached` state without running anything; else
it runs the stage (which resumes from any shards a killed attempt left) and returns it in a
`Completed` state. Calling a task gives that state; `.result()` is the `ArtifactRef`. A later run, or the
rerun of a failed one, therefore reports every finished task as Cached, and a deleted artifact
folder is simply recomputed.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, State
from prefect.tasks import exponential_backoff

from sumpref import stages
from sumpref.artifacts import ArtifactRef
from sumpref.cachekey import StageSpec
from sumpref.config import BackendConfig, JudgeConfig, RunConfig

from tasks.retry import retry_can_help
from tasks.secrets import export_backend_secret

_STAGE = dict(cache_policy=NO_CACHE, retry_condition_fn=retry_can_help)
_GENERATION = dict(_STAGE, retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=10), retry_jitter_factor=0.5)


def run_spec(spec: StageSpec, *backends: BackendConfig) -> State:
    """A Completed state holding the stage's artifact: named `Cached` when it was already finished.

    Callers get the state (Prefect returns a returned state as is): `.result()` is the `ArtifactRef`."""
    done = spec.finished()
    if done is not None:
        return Completed(name="Cached", data=done, message=f"finished artifact {done.uri}")
    for b in backends:  # HTTP backends: resolve Prefect Secret blocks before the stage starts
        if b.backend == "openai":
            export_backend_secret(b)
    return Completed(data=spec.run())


@task(name="load-articles", retries=2, retry_delay_seconds=[5, 30], **_STAGE)
def load_articles(cfg: RunConfig) -> State:
    return run_spec(stages.articles_spec(cfg))


@task(name="write-questions", **_GENERATION)
def write_questions(cfg: RunConfig, articles: ArtifactRef, judge: JudgeConfig, split: str | None = None) -> State:
    return run_spec(stages.questions_spec(cfg, articles, judge, split), *[b for b in [judge.model_backend] if b])


# The round's stages (`sumpref.stages.round.STEPS`): the library builds each spec and names the
# backends it runs (`RoundStep.backends`, whose API keys `run_spec` resolves first); the task runs it.
@task(name="sample-summaries", **_GENERATION)
def sample_summaries(spec: StageSpec, backends: tuple = ()) -> State:
    return run_spec(spec, *backends)


@task(name="judge-summaries", **_GENERATION)
def judge_summaries(spec: StageSpec, backends: tuple = ()) -> State:
    return run_spec(spec, *backends)


@task(name="build-pairs", **_STAGE)
def build_pairs(spec: StageSpec, backends: tuple = ()) -> State:
    return run_spec(spec, *backends)


@task(name="reference-logprobs", **_GENERATION)
def reference_logprobs(spec: StageSpec, backends: tuple = ()) -> State:
    return run_spec(spec, *backends)


@task(name="train-dpo", retries=1, retry_delay_seconds=30, **_STAGE)
def train_dpo(spec: StageSpec, backends: tuple = ()) -> State:
    return run_spec(spec, *backends)


@task(name="merge-adapter", **_STAGE)
def merge_adapter(spec: StageSpec, backends: tuple = ()) -> State:
    return run_spec(spec, *backends)


ROUND_TASKS = {"samples": sample_summaries, "judged": judge_summaries, "pairs": build_pairs,
               "refprobs": reference_logprobs, "dpo": train_dpo, "merged": merge_adapter}
"""The task that runs each step of a round, by stage: the steps themselves are the library's."""
