"""Setup the integration modules share.

- `prefect_api`: a Prefect test server (`prefect_test_harness`) for a module's in-process flow
  tests. One per module, not one per session: Prefect's clients (events included) outlive a
  harness, so a module that starts its own server (the S3 flow, the secrets search in the
  server's database) must not run inside another one.
- `s3`: a real S3-compatible server (moto, 127.0.0.1) for a module's tests.
- Each module leaves no Ray behind (`ray_per_module`): a module that runs work on Ray starts
  local Ray itself (`sumpref.raygen.ensure_ray`), so its workers inherit the environment the
  module set up (an S3 server's credentials, a Ray temp folder that the secrets test searches).
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def prefect_api():
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
