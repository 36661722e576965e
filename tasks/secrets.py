"""Resolve an API key from a Prefect Secret block into the environment variable the backend reads.

The library (`sumpref/`) never imports Prefect: `OpenAIBackend` reads the key from
`os.environ[cfg.api_key_env]`. A flow calls `export_backend_secret(cfg)` (or the task below)
before a stage that uses an `openai` backend with `api_key_secret_block` set. The value is
never logged or returned; an existing environment variable wins (local runs, CI).

The variable lives in this process's environment: a stage that runs its backend in Ray actors
must pass it on explicitly (e.g. `runtime_env={"env_vars": {...}}`) from where it was resolved.
"""

from __future__ import annotations

import os

from prefect import task
from prefect.cache_policies import NO_CACHE

from sumpref.config import OpenAIBackendConfig


def export_backend_secret(cfg: OpenAIBackendConfig, overwrite: bool = False) -> bool:
    """Put the Secret block `cfg.api_key_secret_block` into `$<cfg.api_key_env>`.

    Returns True when the variable is set afterwards. No block configured: nothing to do."""
    name = cfg.api_key_secret_block
    if not name:
        return bool(os.environ.get(cfg.api_key_env))
    if os.environ.get(cfg.api_key_env) and not overwrite:
        return True
    from prefect.blocks.system import Secret

    try:
        value = Secret.load(name, _sync=True).get()
    except ValueError as err:  # Prefect raises ValueError for a missing block
        raise RuntimeError(
            f"Prefect Secret block {name!r} (backend.api_key_secret_block) was not found: create it with "
            f"`Secret(value=...).save({name!r})` or set ${cfg.api_key_env}"
        ) from err
    if not isinstance(value, str) or not value:
        raise RuntimeError(f"Prefect Secret block {name!r} is empty or not a string")
    os.environ[cfg.api_key_env] = value
    return True


@task(name="export-backend-secret", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5, log_prints=False)
def export_backend_secret_task(cfg: OpenAIBackendConfig) -> bool:
    return export_backend_secret(cfg)
