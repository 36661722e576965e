"""Summary-sampling throughput: shared-prefix sampling vs plain `model.generate`, same call, same card.

Workload (issue 3): 10 samples per article, 1,800-token prompts, 100 new tokens, temperature 0.8,
top_p 0.95, Mistral-7B shape with random weights built from a config (timings do not depend on
the values), bf16, SDPA. EOS is disabled so every row generates exactly `new` tokens.

    python benchmarks/sampling.py            # GPU: the real workload
    python benchmarks/sampling.py --tiny     # CPU smoke test of the same code, seconds

Prints one table (output tokens/s, ratio to the baseline, peak GiB) and writes
`$OUT/sampling.json` when OUT is set.
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

from sumpref.backends.prefix_sampling import sample_shared_prefix  # noqa: E402

MISTRAL_7B = dict(
    vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
    num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=32768,
    rope_theta=10000.0, sliding_window=None, rms_norm_eps=1e-5,
)
TINY = dict(
    vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, sliding_window=None,
)


def build_model(shape: dict, dtype, device):
    from transformers import AutoModelForCausalLM, MistralConfig

    cfg = MistralConfig(**shape)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation="sdpa")
    model.eval()
    model.generation_config.eos_token_id = None  # fixed-length rows: count = rows * new
    model.generation_config.pad_token_id = 0
    return model


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def bench_generate(model, prompts, n, new, batch, temperature, top_p, device, mask=True, top_k=0):
    """The published method: each article duplicated n times, plain generate in fixed batches."""
    rows = [p for p in prompts for _ in range(n)]
    tokens, t0 = 0, time.perf_counter()
    with torch.inference_mode():
        for s in range(0, len(rows), batch):
            ids = torch.tensor(rows[s : s + batch], device=device)  # equal lengths: no padding
            kw = dict(attention_mask=torch.ones_like(ids)) if mask else {}
            out = model.generate(
                input_ids=ids, max_new_tokens=new, do_sample=True,
                temperature=temperature, top_p=top_p, top_k=top_k, pad_token_id=0, **kw,
            )
            tokens += (out.shape[1] - ids.shape[1]) * out.shape[0]
    sync(device)
    return tokens, time.perf_counter() - t0


def bench_ours(model, prompts, n, new, temperature, top_p, group, mode, micro, device):
    t0 = time.perf_counter()
    res = sample_shared_prefix(
        model, None, prompts, n, temperature, top_p, new, seed=0,
        prompts_per_group=group, prefill_micro_batch=micro, mode=mode,
    )
    sync(device)
    dt = time.perf_counter() - t0
    tokens = sum(len(t) for r in res for t, _ in r)
    assert all(len(r) == n for r in res)
    return tokens, dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny random model on CPU (smoke test)")
    ap.add_argument("--articles", type=int, default=None)
    ap.add_argument("--baseline-articles", type=int, default=None, help="articles for the generate baseline")
    ap.add_argument("--groups", default=None, help="comma list of prompts_per_group for the shared path")
    ap.add_argument("--baseline-variants", action="store_true",
                    help="also time generate without an attention mask, and with top_k=50")
    ap.add_argument("--prefill-probe", action="store_true", help="also time the last group size with 1 new token")
    ap.add_argument("--expand-group", type=int, default=None, help="also time mode=expand with this group (0: skip)")
    args = ap.parse_args()

    tiny = args.tiny or not torch.cuda.is_available()
    device = "cpu" if tiny else "cuda"
    dtype = torch.float32 if tiny else torch.bfloat16
    shape = TINY if tiny else MISTRAL_7B
    prompt_len, new, n, batch = (64, 8, 10, 8) if tiny else (1800, 100, 10, 64)
    articles = args.articles or (4 if tiny else 64)
    base_articles = args.baseline_articles or (2 if tiny else 12)
    groups = [int(g) for g in (args.groups or ("2,4" if tiny else "32,64")).split(",")]
    expand_group = args.expand_group if args.expand_group is not None else (2 if tiny else 16)
    micro = 2 if tiny else 8
    temperature, top_p = 0.8, 0.95
    if tiny:
        torch.set_num_threads(1)

    torch.manual_seed(0)
    model = build_model(shape, dtype, device)
    gen = torch.Generator().manual_seed(1)
    prompts = torch.randint(100, shape["vocab_size"], (articles, prompt_len), generator=gen).tolist()
    card = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    import transformers

    info = dict(card=card, torch=torch.__version__, transformers=transformers.__version__, dtype=str(dtype),
                prompt_len=prompt_len, new_tokens=new, n=n, temperature=temperature, top_p=top_p,
                date=time.strftime("%Y-%m-%d"))
    print(json.dumps(info), flush=True)

    # Warm-up: kernels, allocator, attention registration (short rows).
    bench_generate(model, prompts[:1], 2, 2, batch, temperature, top_p, device)
    bench_ours(model, prompts[:2], 2, 2, temperature, top_p, 2, "shared", micro, device)

    results = []

    def record(name, tokens, dt):
        peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0.0
        results.append(dict(name=name, output_tokens=tokens, seconds=round(dt, 3), tok_s=round(tokens / dt, 1),
                            peak_gib=round(peak, 1)))
        print(f"{name}: {tokens} tokens in {dt:.2f}s = {tokens / dt:.0f} tok/s (peak {peak:.1f} GiB)", flush=True)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    tok, dt = bench_generate(model, prompts[:base_articles], n, new, batch, temperature, top_p, device)
    record(f"generate batch {batch} (rows duplicated x{n})", tok, dt)
    if args.baseline_variants:
        tok, dt = bench_generate(model, prompts[:base_articles], n, new, batch, temperature, top_p, device, mask=False)
        record(f"generate batch {batch}, no attention_mask", tok, dt)
        tok, dt = bench_generate(model, prompts[:base_articles], n, new, batch, temperature, top_p, device,
                                 mask=False, top_k=50)
        record(f"generate batch {batch}, no attention_mask, top_k=50", tok, dt)
    for g in groups:
        tok, dt = bench_ours(model, prompts, n, new, temperature, top_p, g, "shared", micro, device)
        record(f"shared-prefix, {g} prompts x {n} per group", tok, dt)
    if args.prefill_probe:
        g = groups[-1]
        tok, dt = bench_ours(model, prompts, n, 1, temperature, top_p, g, "shared", micro, device)
        record(f"shared-prefix, {g} prompts per group, 1 new token (prefill cost)", tok, dt)
    if expand_group:
        tok, dt = bench_ours(model, prompts[: max(expand_group * 2, 1)], n, new, temperature, top_p,
                             expand_group, "expand", micro, device)
        record(f"expand cache (library only), {expand_group} prompts x {n} per group", tok, dt)

    base = results[0]["tok_s"]
    print("\n| variant | output tok/s | x generate | peak GiB |\n|---|---|---|---|")
    for r in results:
        r["ratio"] = round(r["tok_s"] / base, 2)
        print(f"| {r['name']} | {r['tok_s']:.0f} | {r['ratio']:.2f} | {r['peak_gib']} |")
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "sampling.json").write_text(json.dumps(dict(info=info, results=results), indent=1))


if __name__ == "__main__":
    main()
