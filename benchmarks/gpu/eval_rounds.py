"""Evaluate every round of a finished GPU run (configs/gpu.yaml with iterations: 2) on its held-out
articles with the evaluation flow: base, round 1 and round 2 against `--baseline`.

    python benchmarks/gpu/eval_rounds.py --root /tmp/runs/gpu [--baseline base] [overrides ...]

The adapters, the merged round-1 model and the articles come from the run's own report.json
(newest evaluation), so nothing is typed by hand.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def run_artifacts(root: Path) -> dict:
    reports = sorted(root.glob("eval_compare/*/report.json"), key=lambda p: p.stat().st_mtime)
    if not reports:
        raise SystemExit(f"{root}: no evaluation report yet")
    arts = json.loads(reports[-1].read_text())["artifacts"]
    if "adapter_round2" not in arts:
        raise SystemExit(f"{reports[-1]}: the run has one round; run it with iterations=2 first")
    merged = sorted(root.glob("merged/*/model"), key=lambda p: p.stat().st_mtime)
    return {"articles": arts["articles"].removeprefix("file://") + "/articles.parquet",
            "round1": arts["adapter_round1"].removeprefix("file://"),
            "round2": arts["adapter_round2"].removeprefix("file://"),
            "merged": str(merged[-1])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True)
    ap.add_argument("--config", default="configs/eval_gpu.yaml")
    ap.add_argument("--baseline", default="base")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    a = run_artifacts(Path(args.root))
    cmd = [sys.executable, "-m", "flows.evaluate", "--config", args.config, f"data.source={a['articles']}",
           f"models.1.backend.adapter={a['round1']}", f"models.2.backend.model={a['merged']}",
           f"models.2.backend.adapter={a['round2']}", f"baseline={args.baseline}", *args.overrides]
    print(" ".join(cmd), flush=True)
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
