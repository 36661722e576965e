"""When a task's retry can help: every failure is retried, except those no rerun of the same
inputs can change (a bad config field, an unusable data row or file, an output path of the wrong
kind). Those fail at once, with their message, instead of after the retry delays: the operator
fixes the cause and retries the flow run, which reuses every finished task."""

from __future__ import annotations

from sumpref.config import ConfigError
from sumpref.data import DataError

PERMANENT = (ConfigError, DataError, NotADirectoryError, IsADirectoryError)


def retry_can_help(task, task_run, state) -> bool:
    """Prefect's `retry_condition_fn`: False for a failure in `PERMANENT` (Ray's wrapped errors
    included: a `RayTaskError` of a ConfigError is also a ConfigError)."""
    return not isinstance(state.data, PERMANENT)
