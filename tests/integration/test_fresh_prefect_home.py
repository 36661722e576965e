"""The newcomer path: the first flow start on a machine that has never run Prefect (a fresh
PREFECT_HOME, no PREFECT_API_URL, so Prefect starts its ephemeral server and creates its
database), while both cores are busy. It used to die at Prefect's 20 s start-up limit."""

import multiprocessing as mp
import os
import subprocess
import sys
import time

from tests.conftest import ROOT

SCRIPT = """
import flows  # the package sets the start-up defaults every entry point gets
from prefect import flow

@flow(name="first-start")
def first_start() -> int:
    return 42

assert first_start() == 42
print("FLOW-RAN")
"""


def _burn(stop_at: float) -> None:
    while time.time() < stop_at:
        sum(i * i for i in range(10_000))


def test_first_flow_start_with_fresh_prefect_home_under_load(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DO_NOT_TRACK"))}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    stop_at = time.time() + 300
    burners = [mp.Process(target=_burn, args=(stop_at,), daemon=True) for _ in range(os.cpu_count() or 2)]
    for p in burners:
        p.start()
    try:
        proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=400)
    finally:
        for p in burners:
            p.terminate()
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "FLOW-RAN" in proc.stdout
    assert (tmp_path / "prefect-home").is_dir()  # the database was created there, not in ~/.prefect
    assert "Failed to send telemetry" not in out
