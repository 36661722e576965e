"""The processes of a run started with `start_new_session=True` (its session), for the tests that
kill or throttle a run: Ray processes it started leave its process group but not its session."""

import os
import signal


def session_pids(sid: int) -> list[int]:
    """Every process in session `sid` (from /proc), this one excluded."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != os.getpid():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()  # state, ppid, pgrp, session, ...
            except OSError:
                continue  # it ended meanwhile
            if int(fields[3]) == sid:
                pids.append(int(d))
    return pids


def signal_pids(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def kill_session(sid: int) -> None:
    """SIGKILL every process still in session `sid`. Only that run's processes: Ray clusters of other
    tests running at the same time (pytest-xdist) are untouched."""
    signal_pids(session_pids(sid), signal.SIGKILL)
