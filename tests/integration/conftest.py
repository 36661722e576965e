"""Setup the integration modules share.

- `prefect_api`: a Prefect test server (`prefect_test_harness`) for the in-process flow tests,
  one for the session. Prefect's clients (events included) outlive a harness, so a module that
  starts its own server (the secrets search in the server's database) must not run
  inside another one: those modules run first (`OWN_PREFECT`).
- `s3`: a real S3-compatible server (moto, 127.0.0.1) for a module's tests.
- Each module leaves no Ray behind (`ray_per_module`): a module that runs work on Ray starts
  local Ray itself (`sumpref.fanout.ensure_ray`), so its workers inherit the environment the
  module set up (an S3 server's credentials, a Ray temp folder that the secrets test searches).
- `make test` runs modules on `TEST_WORKERS` (3) pytest-xdist workers (`--dist loadfile` in
  pyproject.toml: a module's tests, and its module fixtures, stay in one worker). Modules are
  handed out in collection order, each worker getting one and then a second while its first has
  at most two tests left. So the order below is: own-Prefect modules first (each lands first on its
  worker, before that worker starts a shared server), then the longest modules (`LONGEST_FIRST`,
  measured; the kill module first, so it starts at once on the third worker), so the workers end
  together.
"""

from __future__ import annotations

import pytest


# Modules that start a Prefect server of their own (`prefect_test_harness` with their own settings,
# a database the test searches) or none at all on purpose: run before any test that uses the shared
# `prefect_api`, so no server of theirs starts inside the shared one.
OWN_PREFECT = ("test_fresh_prefect_home.py", "test_secrets.py")


# The longest modules, longest first (pytest --durations of one full run on 2 cores, 2026-12-06).
# Handed out first, they leave the short modules to fill the workers' ends.
LONGEST_FIRST = ("test_kill_and_resume.py", "test_deployments.py", "test_pipeline_flow.py", "test_vllm_pipeline.py",
                 "test_ray_train.py", "test_s3_pipeline.py", "test_vllm_ray.py",
                 "test_packing.py", "test_vllm_server.py", "test_store_training.py", "test_evaluate_flow.py",
                 "test_store_shards.py", "test_openai_backend.py")

_shared_server_started = False


def _rank(item) -> tuple[int, int]:
    name = item.path.name
    if name in OWN_PREFECT:
        return (0, OWN_PREFECT.index(name))
    if name in LONGEST_FIRST:
        return (1, LONGEST_FIRST.index(name))
    return (2, 0)  # the rest in collection order (sorted() is stable)


def pytest_collection_modifyitems(config, items):
    items[:] = sorted(items, key=_rank)


@pytest.fixture(scope="module", autouse=True)
def own_prefect_before_the_shared_server(request):
    if request.path.name in OWN_PREFECT and _shared_server_started:
        pytest.fail(f"{request.path.name} starts its own Prefect server and must run before the shared "
                    "`prefect_api` server starts in this process (see OWN_PREFECT)")
    yield


@pytest.fixture(scope="session")
def prefect_api():
    """One Prefect test server for every in-process flow test of the session (started on first use)."""
    from prefect.testing.utilities import prefect_test_harness

    global _shared_server_started
    _shared_server_started = True
    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="module", autouse=True)
def ray_per_module():
    yield
    import ray

    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture(scope="module")
def s3():
    from tests.s3_store import s3_server

    with s3_server() as env:
        yield env
