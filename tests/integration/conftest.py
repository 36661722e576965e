"""Setup the integration modules share, started once per session instead of once per module or
per subprocess (the suite's largest fixed cost on a small machine):

- `ray_cluster`: one real local Ray cluster (`ray start --head --block` on 127.0.0.1 with this
  machine's CPUs, in its own session so teardown kills exactly it). `on_cluster` points a module's
  drivers at it through `RAY_ADDRESS`: the test process (`sumpref.raygen.ensure_ray` connects) and
  every subprocess the module starts (a pipeline run, a Prefect worker's flow runs), as a user's
  drivers connect to their cluster. A driver then pays a connect, not a Ray start.
  Modules whose Ray workers need environment set later in the session (the S3 server's
  credentials) or their own session logs (the secrets search) keep a local Ray of their own.
- `prefect_api`: one Prefect test server (`prefect_test_harness`) for the in-process flow tests.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_session(sid: int) -> None:
    """SIGKILL every process of session `sid` (the head's raylet, GCS, workers and agents)."""
    ps = subprocess.run(["ps", "-eo", "pid=,sid="], capture_output=True, text=True).stdout.splitlines()
    for line in ps:
        pid, s = (int(x) for x in line.split())
        if s == sid and pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="session")
def ray_cluster():
    """The session's Ray cluster; yields its address."""
    port = _free_port()
    address = f"127.0.0.1:{port}"
    temp = tempfile.mkdtemp(prefix="rs-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    head = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", f"--port={port}",
         f"--num-cpus={os.cpu_count()}", "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats",
         f"--temp-dir={temp}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 180
        while True:
            assert head.poll() is None, f"ray start --head exited with {head.returncode}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.time() < deadline, "the session's Ray head did not open its port in 180 s"
                time.sleep(0.5)
        yield address
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        _kill_session(head.pid)
        head.wait(timeout=60)


@pytest.fixture(scope="module")
def on_cluster(ray_cluster):
    """This module's drivers (here and in subprocesses) use the session's cluster."""
    import ray

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_ADDRESS", ray_cluster)
        mp.setenv("RAY_AUTH_MODE", "disabled")
        if ray.is_initialized():  # a local instance some earlier module left connected
            ray.shutdown()
        yield ray_cluster
        if ray.is_initialized():
            ray.shutdown()


@pytest.fixture(scope="session")
def prefect_api():
    """One Prefect test server for every in-process flow test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield
