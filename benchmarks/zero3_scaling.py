"""ZeRO-3 scaling of the packed DPO trainer through Ray Train: one GPU vs two.

Builds a Mistral-7B-shape model with random weights from a config (no hub; `--layers` shrinks
it; vocabulary = the embedded SmolLM2 tokenizer's), initialised in bf16 on the GPU and saved with
that tokenizer; writes a synthetic pairs parquet (random-word articles of ~1,800 tokens, 3 pairs
of ~100-token completions per article, reference log-probs 0); then runs
`sumpref.training.ray_train.train_packed_dpo_ray` with DeepSpeed ZeRO-3, bf16, LoRA r=8 on
q,k,v,o,gate,up,down, gradient checkpointing, on 1 worker and on 2 workers, and reports total
pairs/s of each (rank 0's pairs/s x world), scaling efficiency = pairs/s(2) / (2 x pairs/s(1)),
peak GPU memory (rank 0, `torch.cuda.max_memory_allocated`) and the loss.

Throughput counts the logged steps after `--warmup` steps: total pairs over total time.

Run on a 2-GPU machine: `python benchmarks/zero3_scaling.py --layers 16 --out $OUT`.
`--tiny` runs the same stages on CPU with a toy model (Ray workers over gloo; DeepSpeed ZeRO-3
runs on CPU too, JIT-building its CPU shared-memory comm op on first use; `--deepspeed none`
needs no deepspeed). `--launcher torchrun` runs the same trainer through
`torch.distributed.run` instead of Ray (a fallback that needs no ray).
The tokenizer is copied into `.bench_data/zero3_tok/` (ignored) so it travels with the checkout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TQDM_DISABLE", "1")

TOK_DIR = REPO / ".bench_data" / "zero3_tok"
TOK_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
             "chat_template.json", "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json")
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------- inputs


def prepare_tokenizer(dest: Path = TOK_DIR) -> Path:
    """Copy the embedded SmolLM2 tokenizer files (not its weights) into `dest` once."""
    if (dest / "tokenizer.json").exists():
        return dest
    from sumpref.model_paths import resolve_model

    src = Path(resolve_model("embedded:smollm2-135m-instruct"))
    dest.mkdir(parents=True, exist_ok=True)
    for name in TOK_FILES:
        if (src / name).exists():
            shutil.copy2(src / name, dest / name)
    cfg_path = dest / "tokenizer_config.json"
    if cfg_path.exists():  # the generic fast-tokenizer class loads on every transformers 5.x
        tc = json.loads(cfg_path.read_text())
        tc["tokenizer_class"] = "PreTrainedTokenizerFast"
        cfg_path.write_text(json.dumps(tc, indent=2))
    return dest


def model_config(layers: int, vocab: int, tiny: bool):
    from transformers import MistralConfig

    if tiny:
        return MistralConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                             num_attention_heads=4, num_key_value_heads=2, sliding_window=None)
    # Mistral-7B-Instruct shape (no sliding window), fewer layers when asked.
    return MistralConfig(vocab_size=vocab, hidden_size=4096, intermediate_size=14336, num_hidden_layers=layers,
                         num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=32768,
                         sliding_window=None, rope_theta=10000.0)


def build_model(model_dir: Path, layers: int, tiny: bool) -> dict:
    """Random-weight model (bf16 on the GPU, fp32 on CPU with --tiny) saved with the tokenizer."""
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(prepare_tokenizer()))
    cfg = model_config(layers, len(tok), tiny)
    device = "cpu" if tiny or not torch.cuda.is_available() else "cuda"
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    from random_model import random_mistral  # benchmarks/ is on sys.path when this script runs

    model = random_mistral(cfg, device, dtype)
    n = sum(p.numel() for p in model.parameters())
    model.save_pretrained(str(model_dir))
    tok.save_pretrained(str(model_dir))
    del model
    return {"params": n, "layers": layers, "vocab": cfg.vocab_size, "hidden": cfg.hidden_size,
            "intermediate": cfg.intermediate_size, "heads": cfg.num_attention_heads,
            "kv_heads": cfg.num_key_value_heads, "dtype": str(dtype).replace("torch.", "")}


def write_pairs(path: Path, tok_dir: Path, articles: int, prompt_tokens: int, completion_tokens: int,
                pairs: int, seed: int = 0) -> dict:
    """Synthetic pairs: random-word articles, `pairs` pairs of distinct random completions each."""
    import pandas as pd
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    rng = random.Random(seed)
    # Words: plain lowercase vocabulary entries that are whole words after a space.
    words = sorted({t[1:] for t in tok.get_vocab() if t.startswith("\u0120") and t[1:].isalpha()
                    and t[1:].islower() and 3 <= len(t) - 1 <= 9})
    sample = " ".join(rng.choice(words) for _ in range(1000))
    per_word = len(tok(sample, add_special_tokens=False)["input_ids"]) / 1000  # tokens per word

    def text(ntok: int) -> str:
        return " ".join(rng.choice(words) for _ in range(max(1, round(ntok / per_word))))

    rows = []
    for a in range(articles):
        user = {"role": "user", "content": "Summarize the article in three sentences.\n\n" + text(prompt_tokens)}
        comps = [text(completion_tokens) for _ in range(2 * pairs)]
        for p in range(pairs):
            rows.append({
                "article_id": f"a{a:05d}", "prompt": [user],
                "chosen": [user, {"role": "assistant", "content": comps[2 * p]}],
                "rejected": [user, {"role": "assistant", "content": comps[2 * p + 1]}],
                "ref_chosen_logp": 0.0, "ref_rejected_logp": 0.0,
            })
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path)
    def ntok(msgs, gen: bool) -> int:
        txt = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
        return len(tok(txt, add_special_tokens=False)["input_ids"])

    first = ntok(rows[0]["prompt"], True)
    return {"articles": articles, "pairs": len(rows), "prompt_tokens_first": first,
            "completion_tokens_first": ntok(rows[0]["chosen"], False) - first}


# ----------------------------------------------------------------------------- runs


def dpo_config(args, workers: int):
    from sumpref.config import PackedDPOConfig

    return PackedDPOConfig(
        deepspeed=args.deepspeed, num_workers=workers, use_gpu=not args.tiny, bf16=not args.tiny,
        lora_r=8, lora_alpha=16, lora_dropout=0.0, target_modules=TARGETS, beta=0.01, learning_rate=5e-6,
        per_device_batch_size=args.pairs_per_batch, gradient_accumulation_steps=1,
        max_steps=args.warmup + args.steps, logging_steps=1, save_steps=10**6, gradient_checkpointing=True,
        max_length=4096, seed=0,
    )


def summarize(run_dir: Path, world: int, warmup: int) -> dict:
    """Total pairs/s over the logged steps after warm-up (rank 0 pairs x world / rank 0 time)."""
    recs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    timed = [r for r in recs if r["step"] > warmup] or recs[-1:]
    # logging_steps=1: one record per step, and every step holds the same number of pairs (whole
    # articles of `pairs` pairs each), so total pairs / total time is the harmonic mean.
    secs = [1.0 / r["pairs_per_s"] for r in timed]
    rank0 = len(secs) / sum(secs)
    out = {
        "world": world,
        "timed_steps": len(timed),
        "pairs_per_s_rank0": rank0,
        "pairs_per_s_total": rank0 * world,
        "tokens_per_s_total": world * len(timed) / sum(1.0 / r["tokens_per_s"] for r in timed),
        "loss_first": recs[0]["loss"],
        "loss_last": recs[-1]["loss"],
        "peak_mem_gib_rank0": max((r.get("peak_mem_gib", float("nan")) for r in recs), default=float("nan")),
        "steps_logged": len(recs),
    }
    return out


def run_ray(args, pairs: Path, model_dir: Path, workers: int) -> dict:
    import ray

    from sumpref.training.ray_train import train_packed_dpo_ray

    if not ray.is_initialized():
        ray.init(include_dashboard=False, ignore_reinit_error=True, log_to_driver=True,
                 object_store_memory=2 * 1024**3)
    run_dir = Path(args.out) / f"run_w{workers}"
    shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.perf_counter()
    metrics = train_packed_dpo_ray(str(pairs), str(model_dir), str(run_dir), dpo_config(args, workers))
    wall = time.perf_counter() - t0
    res = summarize(run_dir, workers, args.warmup)
    res["wall_s"] = wall
    res["ray_metrics"] = {k: v for k, v in metrics.items() if k != "summary"}
    return res


def run_torchrun(args, pairs: Path, model_dir: Path, workers: int) -> dict:
    run_dir = Path(args.out) / f"run_w{workers}"
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={workers}",
           str(Path(__file__).resolve()), "--stage", "worker", "--pairs-path", str(pairs), "--model-dir",
           str(model_dir), "--run-dir", str(run_dir), "--workers", str(workers)] + _passthrough(args)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    res = summarize(run_dir, workers, args.warmup)
    res["wall_s"] = time.perf_counter() - t0
    return res


def _passthrough(args) -> list[str]:
    out = ["--deepspeed", args.deepspeed, "--pairs-per-batch", str(args.pairs_per_batch), "--steps", str(args.steps),
           "--warmup", str(args.warmup)]
    return out + (["--tiny"] if args.tiny else [])


def worker(args) -> None:
    """One torchrun rank: the same setup Ray Train's worker does, then the trainer."""
    import torch
    import torch.distributed as dist

    from sumpref.training.packed_dpo import train_packed_dpo

    local = int(os.environ.get("LOCAL_RANK", 0))
    if not args.tiny and torch.cuda.is_available():
        torch.cuda.set_device(local)
        dist.init_process_group("nccl", device_id=torch.device("cuda", local))
    else:
        dist.init_process_group("gloo")
    try:
        train_packed_dpo(args.pairs_path, args.model_dir, args.run_dir, dpo_config(args, int(args.workers)))
    finally:
        dist.destroy_process_group()


# ----------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/zero3_bench"))
    ap.add_argument("--work", default=None, help="model + data folder (default: <out>/work; big: keep off $OUT)")
    ap.add_argument("--tiny", action="store_true", help="toy model on CPU")
    ap.add_argument("--layers", type=int, default=32, help="decoder layers (Mistral-7B: 32)")
    ap.add_argument("--workers", default="1,2", help="worker counts to run, in order")
    ap.add_argument("--launcher", choices=["ray", "torchrun"], default="ray")
    ap.add_argument("--deepspeed", choices=["none", "zero2", "zero3"], default="zero3")
    ap.add_argument("--pairs-per-batch", type=int, default=12, help="pairs per micro-batch per GPU (3 per article)")
    ap.add_argument("--steps", type=int, default=6, help="timed steps")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=1800)
    ap.add_argument("--completion", type=int, default=100)
    ap.add_argument("--pairs", type=int, default=3, help="pairs per article")
    ap.add_argument("--skip-prepare", action="store_true", help="reuse the model and pairs in --work")
    ap.add_argument("--stage", choices=["main", "prepare", "worker"], default="main")
    ap.add_argument("--pairs-path"), ap.add_argument("--model-dir"), ap.add_argument("--run-dir")
    args = ap.parse_args()
    if args.tiny:
        args.prompt, args.completion = min(args.prompt, 60), min(args.completion, 12)
        args.layers = min(args.layers, 2)
    if args.stage == "worker":
        args.workers = int(args.workers)
        return worker(args)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else out / "work"
    model_dir, pairs = work / "model", work / "pairs.parquet"
    counts = [int(w) for w in args.workers.split(",")]
    if args.stage == "prepare":
        t0 = time.perf_counter()
        info = build_model(model_dir, args.layers, args.tiny)
        info["build_s"] = time.perf_counter() - t0
        articles = max(counts) * (args.steps + args.warmup) * math.ceil(args.pairs_per_batch / args.pairs) + 4
        info["data"] = write_pairs(pairs, TOK_DIR, articles, args.prompt, args.completion, args.pairs)
        (work / "prepare.json").write_text(json.dumps(info, indent=2))
        return

    prepare_tokenizer()
    if not args.skip_prepare:
        # A child process builds the model on the GPU, so this driver holds no CUDA context.
        log(f"prepare: {args.layers} layers, model + pairs in {work}")
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--stage", "prepare", "--out", str(out),
                        "--work", str(work), "--layers", str(args.layers), "--workers", args.workers,
                        "--steps", str(args.steps), "--warmup", str(args.warmup),
                        "--pairs-per-batch", str(args.pairs_per_batch), "--prompt", str(args.prompt),
                        "--completion", str(args.completion), "--pairs", str(args.pairs)]
                       + (["--tiny"] if args.tiny else []), check=True)
    info = json.loads((work / "prepare.json").read_text())
    log(f"model: {info}")
    results = {"model": info, "launcher": args.launcher, "deepspeed": args.deepspeed,
               "pairs_per_batch": args.pairs_per_batch, "steps": args.steps, "warmup": args.warmup, "runs": {}}
    for w in counts:
        log(f"run: {w} worker(s), {args.launcher}, deepspeed={args.deepspeed}")
        fn = run_ray if args.launcher == "ray" else run_torchrun
        res = fn(args, pairs, model_dir, w)
        results["runs"][str(w)] = res
        log(f"  {w} worker(s): {res['pairs_per_s_total']:.2f} pairs/s total, loss {res['loss_last']:.5f}, "
            f"peak {res['peak_mem_gib_rank0']:.1f} GiB, wall {res['wall_s']:.0f} s")
        (out / "zero3_scaling.json").write_text(json.dumps(results, indent=2))
    if "1" in results["runs"] and "2" in results["runs"]:
        one, two = results["runs"]["1"]["pairs_per_s_total"], results["runs"]["2"]["pairs_per_s_total"]
        results["scaling_efficiency"] = two / (2 * one)
        log(f"scaling efficiency (2 vs 1): {results['scaling_efficiency']:.3f}")
    (out / "zero3_scaling.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
