"""CPU sampling time against how many prompts decode together (the tests' tiny config).

    python benchmarks/cpu_decode_groups.py [--repeat 2] [--groups 2 4 8]

The embedded SmolLM2-135M (float32, one thread, as a one-CPU shard actor runs it) samples n=3
continuations of 16 tokens for 8 prompts of 150 tokens each, with `sample_shared_prefix`, the
8 prompts split into groups of 2, 4 or 8 (what `sampling.shard_size` and `policy.batch_size`
decide: a group is at most `batch_size // n` prompts of one shard). Prints JSON, seconds per
setting and repeat.

Why it matters: a decoding step on the CPU reads every weight once, whatever the number of rows
it decodes, so fewer, larger groups take fewer weight reads. The prompts' prefill (compute-bound)
costs the same in every setting.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--groups", type=int, nargs="+", default=[2, 4, 8])
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sumpref.backends.prefix_sampling import sample_shared_prefix
    from sumpref.model_paths import resolve_model

    torch.set_num_threads(1)
    path = resolve_model("embedded:smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    prompts = [list(range(1000 + 100 * i, 1150 + 100 * i)) for i in range(8)]
    runs = []
    for rep in range(args.repeat):
        for k in args.groups:
            t = time.perf_counter()
            for g in range(0, len(prompts), k):
                sample_shared_prefix(model, tok, prompts[g:g + k], 3, 0.8, 0.95, 16, 0, prompts_per_group=k)
            runs.append({"repeat": rep, "prompts_per_group": k, "seconds": round(time.perf_counter() - t, 2)})
            print(json.dumps(runs[-1]), flush=True)
    print(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "runs": runs}))


if __name__ == "__main__":
    main()
