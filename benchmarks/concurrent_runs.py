"""Two pipelines on one machine at once, with OpenMP's waiting threads spinning or sleeping.

    python benchmarks/concurrent_runs.py [--runs 2] [--policies unset,PASSIVE] [--max-steps 4] [--out results.json]

Each run is the tests' tiny pipeline (`tests/integration/_pipeline_config.py`: 10 articles, the
embedded model, every stage from articles to evaluation, our packed trainer; two sampling actors
as the tests had when the results were recorded; 4 DPO steps with a checkpoint every 2, as in
tests/integration/test_kill_and_resume.py) in its own process
with its own local Ray and artifact root, as two pytest-xdist workers or two flow runs of one
Prefect worker run them. For each `OMP_WAIT_POLICY` (`unset`: GNU OpenMP's default, threads spin a
while before they sleep) the runs start together; printed: the wall time until the last one ends,
the machine's busy core-seconds over that time (`/proc/stat`, so run it on an otherwise idle
machine), and when each stage ended in the first run. `--runs 1` gives the run alone. Results
print as JSON; record them in benchmarks/RESULTS.md with the date and machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PIPELINE = """
import json, sys, time
from pathlib import Path
from tests.integration._pipeline_config import run_stages, tiny_config
t0, marks = time.perf_counter(), {}
cfg = tiny_config(Path(sys.argv[1]), policy={"replicas": 2, "batch_size": 12}, sampling={"shard_size": 2}, dpo={"max_steps": int(sys.argv[2]), "save_steps": 2})
run_stages(cfg, after=lambda stage: marks.update({stage: round(time.perf_counter() - t0, 1)}))
print("MARKS " + json.dumps(marks))
"""


def busy_core_seconds() -> float:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def concurrent(n: int, policy: str, max_steps: int, work: Path) -> dict:
    procs = []
    c0, t0 = busy_core_seconds(), time.perf_counter()
    for i in range(n):
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "OMP_WAIT_POLICY")}
        if policy != "unset":
            env["OMP_WAIT_POLICY"] = policy
        env.update(PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0",
                   RAY_TMPDIR=tempfile.mkdtemp(prefix=f"r{i}-", dir="/tmp"))  # short: Ray's socket paths
        root = work / f"{policy}-{i}"
        procs.append(subprocess.Popen([sys.executable, "-c", PIPELINE, str(root), str(max_steps)], cwd=ROOT, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate()[0] for p in procs]
    wall, cpu = time.perf_counter() - t0, busy_core_seconds() - c0
    for p, out in zip(procs, outs):
        if p.returncode != 0:
            raise SystemExit(f"a run failed ({policy}):\n{out[-3000:]}")
    marks = json.loads(next(x for x in outs[0].splitlines() if x.startswith("MARKS ")).split(" ", 1)[1])
    return {"OMP_WAIT_POLICY": policy, "runs": n, "dpo_steps": max_steps, "wall_s": round(wall, 1), "busy_core_s": round(cpu, 1),
            "stage_end_s_run0": marks}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--policies", default="unset,PASSIVE", help="OMP_WAIT_POLICY values, comma-separated")
    ap.add_argument("--max-steps", type=int, default=4, help="DPO steps (checkpoint every 2), as in the kill test")
    ap.add_argument("--out")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sumpref-concurrent-"))
    results = {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "date": time.strftime("%Y-%m-%d"),
               "rows": [concurrent(args.runs, p, args.max_steps, work) for p in args.policies.split(",")]}
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
