"""Process clean-up the kill tests share."""

import os
import signal
import subprocess


def kill_session(sid: int) -> None:
    """SIGKILL every process still in session `sid` (a run started with `start_new_session=True`):
    the Ray processes it started leave its process group but not its session. Only that run's
    processes: Ray clusters of other tests running at the same time (pytest-xdist) are untouched."""
    for line in subprocess.run(["ps", "-eo", "pid=,sid="], capture_output=True, text=True).stdout.splitlines():
        pid, s = (int(x) for x in line.split())
        if s == sid and pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
