"""The newcomer path: the first flow start on a machine that has never run Prefect (a fresh
PREFECT_HOME, no PREFECT_API_URL, so Prefect starts its ephemeral server and creates its
database), on a busy core. It used to die at Prefect's 20 s start-up limit.

The load: the flow's processes and a CPU burner share one core (both pinned to it), which halves
the flow's CPU as two busy cores did, and leaves the other core to the rest of the test session.
With Prefect's limit (`PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=20` in the environment,
which `flows` leaves alone) this test fails."""

import multiprocessing as mp
import os
import subprocess
import sys
import time

from tests.conftest import ROOT

SCRIPT = """
import os, sys
os.sched_setaffinity(0, {int(sys.argv[1])})  # the core the burner loads; the server process inherits it
import flows  # the package sets the start-up defaults every entry point gets
from prefect import flow

@flow(name="first-start")
def first_start() -> int:
    return 42

assert first_start() == 42
print("FLOW-RAN")
"""


def _burn(stop_at: float, cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})
    while time.time() < stop_at:
        sum(i * i for i in range(10_000))


def test_first_flow_start_with_fresh_prefect_home_under_load(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DO_NOT_TRACK"))}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    cpu = min(os.sched_getaffinity(0))
    burner = mp.Process(target=_burn, args=(time.time() + 300, cpu), daemon=True)
    burner.start()
    try:
        proc = subprocess.run([sys.executable, "-c", SCRIPT, str(cpu)], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=400)
    finally:
        burner.terminate()
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "FLOW-RAN" in proc.stdout
    assert (tmp_path / "prefect-home").is_dir()  # the database was created there, not in ~/.prefect
    assert "Failed to send telemetry" not in out
