"""Setup the integration modules share.

- `prefect_api`: a Prefect test server (`prefect_test_harness`) for the in-process flow tests,
  one for the session. Prefect's clients (events included) outlive a harness, so a module that
  starts its own server (the S3 flow, the secrets search in the server's database) must not run
  inside another one: those modules run first (`OWN_PREFECT`).
- `s3`: a real S3-compatible server (moto, 127.0.0.1) for a module's tests.
- Each module leaves no Ray behind (`ray_per_module`): a module that runs work on Ray starts
  local Ray itself (`sumpref.raygen.ensure_ray`), so its workers inherit the environment the
  module set up (an S3 server's credentials, a Ray temp folder that the secrets test searches).
"""

from __future__ import annotations

import pytest


# Modules that start a Prefect server of their own (`prefect_test_harness` with their own settings,
# a database the test searches) or none at all on purpose: run before any test that uses the shared
# `prefect_api`, so no server of theirs starts inside the shared one.
OWN_PREFECT = ("test_fresh_prefect_home.py", "test_s3_pipeline.py", "test_secrets.py")


def pytest_collection_modifyitems(config, items):
    own = [it for it in items if it.path.name in OWN_PREFECT]
    items[:] = own + [it for it in items if it.path.name not in OWN_PREFECT]


@pytest.fixture(scope="session")
def prefect_api():
    """One Prefect test server for every in-process flow test of the session (started on first use)."""
    from prefect.testing.utilities import prefect_test_harness

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
