"""A local Prefect stack in the background: server, process work pool, worker, and the
`prefect.yaml` deployments. What `make serve` and `make stop` run.

    python -m deployments.stack start [--port 4200] [--home .prefect]   # prints the UI address
    python -m deployments.stack stop [--home .prefect]

The server and the worker run in their own process groups; their ids go to `{home}/stack.json`,
their logs to `{home}/logs/`, so `stop` ends exactly them. The worker runs flows from this
checkout (`SUMPREF_PROJECT_DIR`, read by the pull step in `prefect.yaml`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

POOL = "sumpref-process"
PROJECT = Path(__file__).resolve().parents[1]


def stack_env(home: Path, port: int) -> dict[str, str]:
    # The worker asks the local server for scheduled runs every 2 s (Prefect's default is 10 s): a run
    # started from the UI or the API starts at once. Its flow runs share this machine's cores (the
    # nightly run beside one started from the UI): OpenMP threads that wait sleep instead of spinning
    # on a core another run computes on (two tiny pipelines at once: 53 s instead of 98 s,
    # benchmarks/concurrent_runs.py). An explicit setting in the environment wins.
    return {"PREFECT_WORKER_QUERY_SECONDS": "2", "OMP_WAIT_POLICY": "PASSIVE", **os.environ, "PREFECT_HOME": str(home),
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "SUMPREF_PROJECT_DIR": str(PROJECT),
            "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT), os.environ.get("PYTHONPATH")) if p)}


def _spawn(args: list[str], env: dict, log: Path) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "prefect", *args], env=env, cwd=PROJECT, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    return proc.pid


def _prefect(args: list[str], env: dict) -> None:
    res = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", *args], env=env, cwd=PROJECT,
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"prefect {' '.join(args)} failed:\n{res.stdout[:1500]}\n...\n{res.stderr[:3000]}")


def wait_healthy(port: int, timeout_s: float = 180) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"the Prefect server on port {port} did not become healthy in {timeout_s:.0f} s")


def start(home: Path, port: int) -> dict:
    """Server, pool, deployments, worker; returns the pids and the UI address."""
    home = home.resolve()
    env = stack_env(home, port)
    pids = {"server": _spawn(["server", "start", "--host", "127.0.0.1", "--port", str(port)], env, home / "logs/server.log")}
    state = {"pids": pids, "port": port, "ui": f"http://127.0.0.1:{port}"}
    (home / "stack.json").write_text(json.dumps(state))
    wait_healthy(port)
    pool = subprocess.run([sys.executable, "-m", "prefect", "work-pool", "inspect", POOL], env=env, capture_output=True)
    if pool.returncode != 0:
        _prefect(["work-pool", "create", POOL, "--type", "process"], env)
    _prefect(["deploy", "--all"], env)
    pids["worker"] = _spawn(["worker", "start", "--pool", POOL, "--type", "process"], env, home / "logs/worker.log")
    (home / "stack.json").write_text(json.dumps(state))
    return state


def stop(home: Path) -> list[str]:
    """End the worker, then the server, by the process-group ids `start` recorded."""
    path = home.resolve() / "stack.json"
    if not path.exists():
        return []
    stopped = []
    for name, pid in sorted(json.loads(path.read_text())["pids"].items(), key=lambda kv: kv[0] != "worker"):
        try:
            os.killpg(pid, signal.SIGTERM)
            stopped.append(name)
        except ProcessLookupError:
            continue
        for _ in range(60):
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:  # our own child (a test fixture): reaped
                    break
            except ChildProcessError:
                pass
            try:
                os.kill(pid, 0)
                time.sleep(0.5)
            except ProcessLookupError:
                break
        else:
            os.killpg(pid, signal.SIGKILL)
    path.unlink()
    return stopped


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["start", "stop"])
    ap.add_argument("--port", type=int, default=4200)
    ap.add_argument("--home", type=Path, default=PROJECT / ".prefect")
    args = ap.parse_args(argv)
    if args.action == "stop":
        print("stopped: " + (", ".join(stop(args.home)) or "nothing was running"))
        return 0
    if (args.home / "stack.json").exists():
        print(f"already running (see {args.home / 'stack.json'}); `make stop` first", file=sys.stderr)
        return 1
    state = start(args.home, args.port)
    print(f"Prefect UI: {state['ui']}  (logs: {args.home / 'logs'}; stop with `make stop`)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
