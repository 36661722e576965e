"""Wall time of the demo pipeline on this machine: cold, cached, and resumed after a SIGKILL.

    python benchmarks/cpu_pipeline.py [--config configs/demo.yaml] [--kill-after-shards 2] [--out results.json]

- cold: a fresh artifact root and a fresh Prefect home (the converted embedded model is reused
  from $SUMPREF_CACHE; pass --cold-model to convert it again as well);
- cached: the same command again: every task should report `Cached`;
- resumed: a fresh root, the run SIGKILLed once `--kill-after-shards` sampling shards are on
  disk, then rerun; the rerun's wall time and how many shards it recomputed.
Results print as JSON; record them in benchmarks/RESULTS.md with the date and machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str], env: dict, kill_when=None) -> tuple[float, str, int]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    if kill_when is None:
        out, _ = proc.communicate()
        return time.perf_counter() - t0, out, proc.returncode
    while proc.poll() is None and not kill_when():
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "stop", "--force"], capture_output=True)
    return time.perf_counter() - t0, "", proc.returncode


def states(log: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for m in re.finditer(r"Task run '[^']+' - Finished in state (\w+)\(", log):
        counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--kill-after-shards", type=int, default=2)
    ap.add_argument("--cold-model", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sumpref-bench-"))
    env = {**os.environ, "PREFECT_HOME": str(work / "prefect"), "PYTHONUNBUFFERED": "1"}
    if args.cold_model:
        env["SUMPREF_CACHE"] = str(work / "cache")
    flow = [sys.executable, "-m", "flows.full_pipeline", "--config", args.config]
    result: dict = {"machine": f"{platform.node()} {os.cpu_count()} cores", "config": args.config,
                    "date": time.strftime("%Y-%m-%d")}

    t, log, rc = run(flow + [f"root={work / 'a'}"], env)
    assert rc == 0, log[-3000:]
    result["cold_s"], result["cold_states"] = round(t, 1), states(log)
    t, log, rc = run(flow + [f"root={work / 'a'}"], env)
    assert rc == 0, log[-3000:]
    result["cached_s"], result["cached_states"] = round(t, 1), states(log)

    root_b = work / "b"
    t_kill, _, _ = run(flow + [f"root={root_b}"], env,
                       kill_when=lambda: len(list(root_b.glob("samples/*/shards/*.parquet"))) >= args.kill_after_shards)
    done = len(list(root_b.glob("samples/*/shards/*.parquet")))
    t, log, rc = run(flow + [f"root={root_b}"], env)
    assert rc == 0, log[-3000:]
    meta = json.loads(next(root_b.glob("samples/*/meta.json")).read_text())["info"]
    result.update(killed_after_s=round(t_kill, 1), shards_done_at_kill=done, resumed_s=round(t, 1),
                  resumed_shards_reused=meta["shards_reused"], resumed_shards_computed=meta["shards_computed"])
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
