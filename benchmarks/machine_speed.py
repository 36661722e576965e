"""How fast this machine is right now, to put a test-suite or pipeline time in context.

    python benchmarks/machine_speed.py [--repeat 3]

Two single-thread probes, each a few seconds:
- `stream_gb_s`: a 6-row product with a 566 MB float32 matrix (the shape of a decode step's weight
  reads), in GB of weights read per second: memory bandwidth, which bounds CPU generation;
- `py_loop_s`: seconds for five million Python additions: the interpreter (imports, orchestration).

On a shared VM both move with the neighbours' load: on 2026-12-06 the 2-core development VM gave
2.7-4.4 GB/s within two hours, and the same test suite took 538 s and 868 s half an hour apart. Prints JSON; record it next to the timings it explains (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import time


def probe() -> dict:
    import torch

    torch.set_num_threads(1)
    w = torch.randn(49152, 2880)
    x = torch.randn(6, 2880)
    for _ in range(2):
        x @ w.T
    t = time.perf_counter()
    for _ in range(10):
        x @ w.T
    gb = 10 * w.numel() * w.element_size() / 1e9
    stream = gb / (time.perf_counter() - t)
    t = time.perf_counter()
    s = 0
    for i in range(5_000_000):
        s += i
    return {"stream_gb_s": round(stream, 2), "py_loop_s": round(time.perf_counter() - t, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                      "runs": [probe() for _ in range(args.repeat)]}))


if __name__ == "__main__":
    main()
