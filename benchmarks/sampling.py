"""Summary-sampling throughput: shared-prefix sampling vs plain `model.generate`, same call, same card.

Two workloads, random weights built from a config (timings do not depend on the values), bf16, SDPA,
temperature 0.8, top_p 0.95, EOS disabled so every row generates exactly `new` tokens:

- `135m` (issue 27): the GPU recipe's policy, SmolLM2-135M's llama shape (hidden 576, 30 layers, 9 heads,
  3 kv heads, vocab 49152), 8 samples per article, 1,000-token prompts, 80 new tokens. `generate` runs at
  several batch sizes (rows duplicated x8, no attention mask: equal lengths need none, and a mask turns off
  SDPA's fused path); each size's second batch is timed (the first at a new size is a warm-up).
- `7b` (issue 3): Mistral-7B shape, 10 samples per article, 1,800-token prompts, 100 new tokens.

For each workload it prints the card, a table (output tokens/s, ratio to `generate`'s best batch, peak GiB)
and the hardware bound computed from the model's shapes: prefill FLOPs at the card's dense bf16 peak plus,
per decoding step, the weights and the key/value bytes that step must read (the prompt's once per article
in the shared layout, once per row when rows are duplicated), at the card's memory bandwidth.

    python benchmarks/sampling.py                    # GPU: both workloads, one run
    python benchmarks/sampling.py --shape 135m       # one of them
    python benchmarks/sampling.py --tiny             # CPU smoke test of the same code, seconds

Writes `$OUT/sampling.json` when OUT is set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from sumpref.backends.prefix_sampling import bytes_per_token, plan_groups, sample_shared_prefix  # noqa: E402

SMOLLM2_135M = dict(
    arch="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192, rope_theta=100000.0,
    rms_norm_eps=1e-5, tie_word_embeddings=True,
)
MISTRAL_7B = dict(
    arch="mistral", vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
    num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=32768,
    rope_theta=10000.0, sliding_window=None, rms_norm_eps=1e-5,
)
TINY = dict(
    arch="mistral", vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, sliding_window=None,
)
TINY_LLAMA = dict(
    arch="llama", vocab_size=1000, hidden_size=48, intermediate_size=96, num_hidden_layers=3,
    num_attention_heads=3, num_key_value_heads=1, max_position_embeddings=512, tie_word_embeddings=True,
)

# Per workload: shape, prompt tokens, new tokens, samples per article, articles for ours, generate's batch
# sizes, our variants (prompts per group or "auto"; CUDA graph on/off; articles, default all).
WORKLOADS = {
    "135m": dict(shape=SMOLLM2_135M, prompt=1000, new=80, n=8, articles=1024, batches=[256, 512, 1024], reps=2,
                 ours=[("auto", True, None), ("auto", False, None), (8, True, 64)]),
    "7b": dict(shape=MISTRAL_7B, prompt=1800, new=100, n=10, articles=128, batches=[64, 128], reps=2,
               ours=[(64, True, None), (128, True, None)]),
}
TINY_WORKLOADS = {
    "135m": dict(shape=TINY_LLAMA, prompt=64, new=8, n=8, articles=8, batches=[16, 32], reps=2,
                 ours=[("auto", True, None), (2, False, 4)]),
    "7b": dict(shape=TINY, prompt=64, new=8, n=10, articles=4, batches=[8], reps=2, ours=[(2, True, None)]),
}

# (name fragment, memory bandwidth B/s, dense bf16 FLOP/s): public datasheet figures.
CARDS = [("H200", 4.8e12, 989e12), ("H100 NVL", 3.9e12, 835e12), ("H100 PCIe", 2.0e12, 756e12),
         ("H100", 3.35e12, 989e12), ("A100-SXM4-80GB", 2.04e12, 312e12), ("A100", 1.56e12, 312e12)]


def card_limits(name: str) -> tuple[float | None, float | None]:
    for frag, bw, flops in CARDS:
        if frag in name:
            return bw, flops
    return None, None


def build_model(shape: dict, dtype, device):
    from transformers import AutoModelForCausalLM, LlamaConfig, MistralConfig

    shape = dict(shape)
    cfg = {"llama": LlamaConfig, "mistral": MistralConfig}[shape.pop("arch")](**shape)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation="sdpa")
    model.eval()
    model.generation_config.eos_token_id = None  # fixed-length rows: count = rows * new
    model.generation_config.pad_token_id = 0
    return model


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def bench_generate(model, prompts, n, new, batch, reps, temperature, top_p, device, mask=False, top_k=0):
    """The published method: each article duplicated n times, plain generate in batches of `batch`.
    Runs `reps` batches and times the last one (the first at a new size warms the allocator and kernels)."""
    rows = [p for p in prompts for _ in range(n)]
    rows = (rows * (batch * reps // max(1, len(rows)) + 1))[: batch * reps]
    tokens, dt = 0, 0.0
    with torch.inference_mode():
        for r in range(reps):
            ids = torch.tensor(rows[r * batch : (r + 1) * batch], device=device)  # equal lengths: no padding
            kw = dict(attention_mask=torch.ones_like(ids)) if mask else {}
            sync(device)
            t0 = time.perf_counter()
            out = model.generate(input_ids=ids, max_new_tokens=new, do_sample=True, temperature=temperature,
                                 top_p=top_p, top_k=top_k, pad_token_id=0, **kw)
            sync(device)
            tokens, dt = (out.shape[1] - ids.shape[1]) * out.shape[0], time.perf_counter() - t0
    return tokens, dt


def bench_ours(model, prompts, n, new, temperature, top_p, group, device, cuda_graph=None, micro=None, mode="shared"):
    sync(device)
    t0 = time.perf_counter()
    res = sample_shared_prefix(model, None, prompts, n, temperature, top_p, new, seed=0, prompts_per_group=group,
                               prefill_micro_batch=micro, mode=mode, cuda_graph=cuda_graph)
    sync(device)
    dt = time.perf_counter() - t0
    assert all(len(r) == n for r in res)
    return sum(len(t) for r in res for t, _ in r), dt


def bound(model, articles: int, group_sizes: list[int], prompt: int, new: int, n: int, shared: bool,
          bw: float | None, flops: float | None) -> dict:
    """The hardware's best time for the workload: prefill FLOPs at peak plus decode bytes at full bandwidth."""
    if bw is None or flops is None:
        return {}
    cfg = model.config
    params = sum(p.numel() for p in model.parameters())
    elem = next(model.parameters()).element_size()
    kvb = bytes_per_token(model)
    emb = cfg.vocab_size * cfg.hidden_size
    body = params - (0 if cfg.tie_word_embeddings else emb) - emb  # matmul weights per prompt token (no lm_head)
    prefill_rows = articles if shared else articles * n
    d = cfg.hidden_size // cfg.num_attention_heads
    attn = 2 * cfg.num_hidden_layers * cfg.num_attention_heads * d * prompt * prompt  # causal QK^T and PV
    prefill_s = prefill_rows * (2 * body * prompt + attn) / flops
    decode_bytes = 0.0
    for g in group_sizes:  # one pass over the weights per step and group, plus that step's key/value reads
        rows = g * n
        for t in range(new):
            kv = (g * prompt + rows * t) if shared else rows * (prompt + t)
            decode_bytes += params * elem + kv * kvb
    decode_s = decode_bytes / bw
    return dict(prefill_s=round(prefill_s, 3), decode_s=round(decode_s, 3),
                tok_s=round(articles * n * new / (prefill_s + decode_s), 1))


def profile_ours(model, prompts, n, new, temperature, top_p, group, device, top=18):
    """The decoding loop's kernels (eager, so that each op shows) for one group: where a step's time goes."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=acts) as prof:
        bench_ours(model, prompts[:group], n, new, temperature, top_p, group, device, cuda_graph=False)
    key = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=top), flush=True)


def run_workload(name: str, w: dict, args, device, dtype, card: str, info: dict) -> list[dict]:
    temperature, top_p = 0.8, 0.95
    n, new, prompt = w["n"], w["new"], w["prompt"]
    articles = args.articles or w["articles"]
    torch.manual_seed(0)
    model = build_model(w["shape"], dtype, device)
    gen = torch.Generator().manual_seed(1)
    prompts = torch.randint(100, w["shape"]["vocab_size"], (articles, prompt), generator=gen).tolist()
    bw, flops = card_limits(card)
    print(f"\n## {name}: {articles} articles x {n} samples, {prompt}-token prompts, {new} new tokens", flush=True)

    # Warm-up: kernels, allocator, attention registration (short rows).
    bench_generate(model, prompts[:1], 2, 2, 2, 1, temperature, top_p, device)
    bench_ours(model, prompts[:2], 2, 2, temperature, top_p, 2, device)
    if args.profile:
        profile_ours(model, prompts, n, min(new, 16), temperature, top_p, min(64, articles), device)

    results = []

    def record(variant, tokens, dt, **extra):
        peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0.0
        results.append(dict(workload=name, variant=variant, output_tokens=tokens, seconds=round(dt, 3),
                            tok_s=round(tokens / dt, 1), peak_gib=round(peak, 1), **extra))
        print(f"{variant}: {tokens} tokens in {dt:.2f}s = {tokens / dt:.0f} tok/s (peak {peak:.1f} GiB)", flush=True)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()

    def attempt(fn, *a, **kw):
        try:
            return fn(*a, **kw)
        except torch.OutOfMemoryError as exc:
            print(f"  out of memory ({str(exc).splitlines()[0][:120]})", flush=True)
            torch.cuda.empty_cache()
            return None

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    base_articles = [prompts[i % articles] for i in range(max(w["batches"]) * w["reps"] // n + 1)]
    for b in w["batches"]:
        got = attempt(bench_generate, model, base_articles, n, new, b, w["reps"], temperature, top_p, device)
        if got:
            record(f"generate batch {b} (rows duplicated x{n}, no mask)", *got, kind="generate", batch=b)
            results[-1]["bound"] = bound(model, b // n, [b // n], prompt, new, n, False, bw, flops)
    if args.baseline_variants:
        b = w["batches"][0]
        got = attempt(bench_generate, model, base_articles, n, new, b, w["reps"], temperature, top_p, device, mask=True)
        if got:
            record(f"generate batch {b}, attention_mask passed", *got, kind="generate-variant", batch=b)
    for group, graph, sub in w["ours"]:
        ps = prompts[: sub or articles]
        g = None if group == "auto" else group
        sizes = plan_groups(model, [len(p) for p in ps], n, new, g) if device == "cuda" or g else [len(ps)]
        label = (f"shared prefix, groups of {'/'.join(map(str, sorted(set(sizes))))} prompts x {n}"
                 f"{' (auto)' if g is None else ''}, {'CUDA graph' if graph and device == 'cuda' else 'eager loop'}"
                 f", {len(ps)} articles")
        got = attempt(bench_ours, model, ps, n, new, temperature, top_p, g, device, cuda_graph=graph)
        if got:
            record(label, *got, kind="ours", groups=sizes)
            results[-1]["bound"] = bound(model, len(ps), sizes, prompt, new, n, True, bw, flops)

    gens = [r for r in results if r["kind"] == "generate"]
    best = max(gens, key=lambda r: r["tok_s"]) if gens else None
    print(f"\n| {name} variant | output tok/s | x best generate | peak GiB | hardware bound tok/s |\n|---|---|---|---|---|")
    for r in results:
        r["x_best_generate"] = round(r["tok_s"] / best["tok_s"], 2) if best else None
        b = r.get("bound", {}).get("tok_s")
        print(f"| {r['variant']} | {r['tok_s']:.0f} | {r['x_best_generate']} | {r['peak_gib']} | {b or '-'} |")
    if bw:
        kvb = bytes_per_token(model)
        print(f"({card}: {bw / 1e12:.2f} TB/s, {flops / 1e12:.0f} TFLOP/s bf16 dense; {kvb} key/value bytes per token)")
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny random models on CPU (smoke test)")
    ap.add_argument("--shape", default="135m,7b", help="comma list of workloads: 135m, 7b")
    ap.add_argument("--articles", type=int, default=None, help="articles for our sampler (default per workload)")
    ap.add_argument("--baseline-variants", action="store_true", help="also time generate with an attention mask")
    ap.add_argument("--profile", action="store_true", help="print the top kernels of one eager decoding group")
    args = ap.parse_args()

    tiny = args.tiny or not torch.cuda.is_available()
    device = "cpu" if tiny else "cuda"
    dtype = torch.float32 if tiny else torch.bfloat16
    if tiny:
        torch.set_num_threads(1)
    card = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    import transformers

    info = dict(card=card, torch=torch.__version__, transformers=transformers.__version__, dtype=str(dtype),
                temperature=0.8, top_p=0.95, date=time.strftime("%Y-%m-%d"), command=" ".join(sys.argv))
    print(json.dumps(info), flush=True)
    table = TINY_WORKLOADS if tiny else WORKLOADS
    results = []
    for name in args.shape.split(","):
        w = table[name.strip()]
        results += run_workload(name.strip(), w, args, device, dtype, card, info)
        if os.environ.get("OUT"):
            Path(os.environ["OUT"], "sampling.json").write_text(json.dumps(dict(info=info, results=results), indent=1))


if __name__ == "__main__":
    main()
