"""A task retries a failure only where a retry can change it (`tasks/retry.py`)."""

from prefect.states import Failed
from prefect.tasks import Task

import tasks.evaluate
import tasks.stages
from sumpref.backends.base import TransientGenerationError
from sumpref.config import ConfigError
from sumpref.data import DataError
from tasks.retry import retry_can_help


def can_retry(exc: BaseException) -> bool:
    return retry_can_help(None, None, Failed(data=exc))


def test_failures_no_rerun_can_change_are_not_retried():
    assert not can_retry(ConfigError("dpo.beta: must be > 0"))
    assert not can_retry(DataError("cnndm.jsonl row 3: no 'article'"))
    assert not can_retry(NotADirectoryError(20, "Not a directory", "runs/dpo"))
    assert not can_retry(IsADirectoryError(21, "Is a directory", "runs/pairs.parquet"))


def test_other_failures_are_retried():
    assert can_retry(TransientGenerationError("2 generation(s) failed transiently"))
    assert can_retry(RuntimeError("the actor died"))
    assert can_retry(FileNotFoundError(2, "No such file", "s3://bucket/x"))
    assert can_retry(OSError(28, "No space left on device"))


def test_a_failure_raised_in_a_ray_worker_keeps_its_kind():
    from ray.exceptions import RayTaskError

    wrapped = RayTaskError("run", "Traceback ...", DataError("row 3: no article")).as_instanceof_cause()
    assert isinstance(wrapped, RayTaskError)
    assert not can_retry(wrapped)
    assert can_retry(RayTaskError("run", "Traceback ...", RuntimeError("boom")).as_instanceof_cause())


def test_every_task_that_retries_asks_first():
    retried = [t for mod in (tasks.stages, tasks.evaluate) for t in vars(mod).values()
               if isinstance(t, Task) and t.retries]
    assert len(retried) >= 8
    assert all(t.retry_condition_fn is retry_can_help for t in retried), [t.name for t in retried]
