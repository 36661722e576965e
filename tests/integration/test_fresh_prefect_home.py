"""The newcomer path: the first flow start on a machine that has never run Prefect (a fresh
PREFECT_HOME, no PREFECT_API_URL, so Prefect starts its ephemeral server and creates its
database), on a busy core. It used to die at Prefect's 20 s start-up limit.

The load: the flow's processes (its session: the script and the server it starts) run on one core
and get a third of it. A throttle stops them (SIGSTOP) for two thirds of every 100 ms and lets
them go (SIGCONT) for the rest: the share that two other busy processes on that core would leave
them, without burning the rest (an earlier version ran a CPU burner beside them: 41 busy
core-seconds against 22). Checked by hand (2026-12-06) that with Prefect's limit
(`PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=20` set in the script before `import flows`,
which leaves a set value alone) this test fails: "Timed out while attempting to connect to
ephemeral Prefect API server"; with half the core instead of a third, the server started in time
on an idle machine."""

import os
import signal
import subprocess
import sys
import threading
import time

from tests.conftest import ROOT
from tests.integration._procs import kill_session, session_pids, signal_pids

SCRIPT = """
import os, sys
os.sched_setaffinity(0, {int(sys.argv[1])})  # one core; the server process inherits it
import flows  # the package sets the start-up defaults every entry point gets
from prefect import flow

@flow(name="first-start")
def first_start() -> int:
    return 42

assert first_start() == 42
print("FLOW-RAN")
"""


def throttle(proc: subprocess.Popen, share: float = 0.33, period: float = 0.1) -> None:
    """Until `proc` ends: its session runs `share` of every `period` and is stopped for the rest."""
    pids: list[int] = []
    listed = 0.0
    try:
        while proc.poll() is None:
            if time.monotonic() - listed > 0.5:  # new processes (the server) join within half a second
                pids, listed = session_pids(proc.pid), time.monotonic()
            time.sleep(period * share)
            signal_pids(pids, signal.SIGSTOP)
            time.sleep(period * (1 - share))
            signal_pids(pids, signal.SIGCONT)
    finally:
        signal_pids(session_pids(proc.pid), signal.SIGCONT)


def test_first_flow_start_with_fresh_prefect_home_under_load(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DO_NOT_TRACK"))}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    cpu = min(os.sched_getaffinity(0))
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(cpu)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    load = threading.Thread(target=throttle, args=(proc,), daemon=True)
    load.start()
    try:
        stdout, stderr = proc.communicate(timeout=400)
    finally:
        load.join(timeout=10)  # the throttle ends with the script, and lets its session go on
        kill_session(proc.pid)  # what is left of it: the server, if the script died first
    out = stdout + stderr
    assert proc.returncode == 0, out[-3000:]
    assert "FLOW-RAN" in stdout
    assert (tmp_path / "prefect-home").is_dir()  # the database was created there, not in ~/.prefect
    assert "Failed to send telemetry" not in out
