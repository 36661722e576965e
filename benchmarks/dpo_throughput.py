"""DPO training throughput: sumpref's packed trainer vs TRL DPOTrainer, same model, same card.

Workload (defaults): Mistral-7B shape with random weights (no hub), bf16, SDPA, LoRA r=8
alpha=16 on q,k,v,o,gate,up,down, beta 0.01, articles with a 1,800-token prompt and 3 pairs of
100-token chosen/rejected completions (6 distinct completions: no deduplication gain unless
`--distinct` is lower). Both trainers use precomputed reference log-probs (reference = base
model, adapter off) and start from the same adapter weights (LoRA B randomised so that the
policy differs from the reference); the DPO loss of both on the same pairs is printed.

MFU counts model FLOPs of the work each trainer executes (TRL runs each prompt twice per pair):
2 x linear params per token forward plus causal attention (4 * keys * d_model per layer), times
2 for training (forward + input gradients; the frozen base needs no weight gradients;
recomputation not counted), over 989.4 TFLOP/s (H100 SXM dense bf16).

Run: `python benchmarks/dpo_throughput.py --out $OUT` on one GPU; `--tiny` runs every code path
on CPU with a toy model in about a minute.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sumpref.config import DPOConfig  # noqa: E402
from sumpref.training.packed_dpo import packed_dpo_loss  # noqa: E402
from sumpref.training.packing import ArticleGroup, PackedLogProbs, pack_groups  # noqa: E402
from sumpref.training.refprobs import reference_logps  # noqa: E402

PEAK_FLOPS = 989.4e12
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def model_config(tiny: bool):
    from transformers import MistralConfig

    if tiny:
        return MistralConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, sliding_window=None)
    # Mistral-7B-Instruct shape; no sliding window (the v0.2+ layout; at 2k tokens it changes nothing).
    return MistralConfig(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=32768,
                         sliding_window=None, rope_theta=10000.0)


def build_model(cfg, device, dtype):
    from random_model import random_mistral  # benchmarks/ is on sys.path when this script runs

    return random_mistral(cfg, device, dtype)


def make_articles(n: int, prompt: int, comp: int, pairs: int, distinct: int, vocab: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    rnd = lambda k: torch.randint(3, vocab, (k,), generator=g).tolist()  # noqa: E731
    arts = []
    for a in range(n):
        comps = [rnd(comp) for _ in range(distinct)]
        # pairs over `distinct` summaries: (0,1), (2,3), (4,5) when distinct = 2 * pairs
        prs = [((2 * i) % distinct, (2 * i + 1) % distinct) for i in range(pairs)]
        arts.append(ArticleGroup(str(a), rnd(prompt), comps, prs, list(range(a * pairs, (a + 1) * pairs))))
    return arts


def linear_params(c) -> int:
    kv = c.num_key_value_heads * (c.hidden_size // c.num_attention_heads)
    per_layer = 2 * c.hidden_size * c.hidden_size + 2 * c.hidden_size * kv + 3 * c.hidden_size * c.intermediate_size
    return per_layer * c.num_hidden_layers


def fwd_flops(c, contexts: list[int], head_tokens: int) -> float:
    """Forward FLOPs for tokens whose attention spans `contexts` keys, plus the LM head on `head_tokens`."""
    lin = 2 * linear_params(c) * len(contexts)
    attn = 4 * c.hidden_size * c.num_hidden_layers * sum(contexts)
    return lin + attn + 2 * c.hidden_size * c.vocab_size * head_tokens


def packed_contexts(g: ArticleGroup) -> list[int]:
    P = len(g.prompt_ids)
    ctx = list(range(1, P + 1))
    for comp in g.completions:
        ctx += [P + j + 1 for j in range(len(comp))]
    return ctx


def pair_contexts(g: ArticleGroup) -> list[int]:
    """What a pairwise trainer runs: prompt+chosen and prompt+rejected for every pair."""
    P = len(g.prompt_ids)
    ctx = []
    for c, r in g.pairs:
        for k in (c, r):
            ctx += list(range(1, P + len(g.completions[k]) + 1))
    return ctx


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_gib(device) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def lora_state(model):
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}


def load_lora(model, state):
    from peft import set_peft_model_state_dict

    set_peft_model_state_dict(model, state)


# ----------------------------------------------------------------------------- ours


def ours_reference(model, arts, device, pairs_per_batch):
    with model.disable_adapter():
        reset_peak(device)
        sync(device)
        t = time.perf_counter()
        scores = reference_logps(model, arts, pad_id=0, pairs_per_batch=pairs_per_batch)
        sync(device)
        dt = time.perf_counter() - t
    n = len(scores)
    rc = torch.tensor([scores[i][0] for i in range(n)], dtype=torch.float64)
    rr = torch.tensor([scores[i][1] for i in range(n)], dtype=torch.float64)
    return rc, rr, {"pairs_per_s": n / dt, "seconds": dt, "peak_gib": peak_gib(device)}


def autocast_dtype(device):
    return torch.bfloat16 if device.type == "cuda" else None


def set_input_cast(model, enabled: bool) -> None:
    for m in model.modules():
        if hasattr(m, "lora_A") and hasattr(m, "_cast_input_dtype"):
            m.cast_input_dtype_enabled = enabled


def ours_eval_loss(model, arts, rc, rr, cfg, device):
    model.eval()
    out = {}
    scorer = PackedLogProbs(model, autocast_dtype(device))
    with torch.no_grad():
        batch = pack_groups(arts, 0).to(device)
        rows = torch.tensor(batch.rows)
        logps = scorer(**batch.model_inputs())
        for beta in (cfg.beta, 1.0):  # beta 1 makes any difference in log-probs visible in the loss
            res = packed_dpo_loss(scorer, batch, rc[rows], rr[rows], cfg.model_copy(update={"beta": beta}))
            out[f"beta={beta}"] = {
                "loss": float(res.losses.mean()),
                "rewards/margins": float((res.chosen_rewards - res.rejected_rewards).mean()),
                "logps/chosen": float(logps[batch.chosen_index].mean()),
                "logps/rejected": float(logps[batch.rejected_index].mean()),
            }
    model.train()
    return out


def ours_train(model, arts, rc, rr, cfg, device, articles_per_step, checkpointing, steps, warmup, mcfg, peft_fp32=False):
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_disable()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, fused=device.type == "cuda")
    # peft_fp32: PEFT's default (activations copied to fp32 for the adapter, no autocast), for attribution.
    set_input_cast(model, peft_fp32)
    scorer = PackedLogProbs(model, None if peft_fp32 else autocast_dtype(device))
    batches = [arts[i : i + articles_per_step] for i in range(0, len(arts) - articles_per_step + 1, articles_per_step)]
    reset_peak(device)
    times, losses = [], []
    for s in range(warmup + steps):
        gs = batches[s % len(batches)]
        sync(device)
        t = time.perf_counter()
        batch = pack_groups(gs, 0).to(device)
        rows = torch.tensor(batch.rows)
        res = packed_dpo_loss(scorer, batch, rc[rows], rr[rows], cfg)
        loss = res.losses.mean()
        loss.backward()
        loss = loss.detach()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        if s >= warmup:
            times.append(time.perf_counter() - t)
            losses.append(float(loss))
    step = statistics.median(times)
    pairs = sum(len(g.pairs) for g in batches[0])
    tokens = sum(g.n_tokens for g in batches[0])
    flops = 2 * sum(fwd_flops(mcfg, packed_contexts(g), sum(map(len, g.completions))) for g in batches[0])
    del opt
    set_input_cast(model, False)
    return {"step_s": step, "pairs_per_s": pairs / step, "tokens_per_s": tokens / step, "peak_gib": peak_gib(device),
            "mfu": flops / step / PEAK_FLOPS, "pairs_per_step": pairs, "step_spread_s": max(times) - min(times),
            "mean_loss": statistics.mean(losses)}


# ----------------------------------------------------------------------------- TRL


def tiny_tokenizer():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel({"<unk>": 0, "<s>": 1, "</s>": 2}, unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<unk>")


def trl_dataset(arts):
    from datasets import Dataset

    rows = {"prompt_ids": [], "chosen_ids": [], "rejected_ids": []}
    for g in arts:
        for c, r in g.pairs:
            rows["prompt_ids"].append(g.prompt_ids)
            rows["chosen_ids"].append(g.completions[c])
            rows["rejected_ids"].append(g.completions[r])
    return Dataset.from_dict(rows)


def trl_run(base, arts, state, cfg, device, batch, steps, warmup, tiny, eval_pairs, out_dir):
    """Train TRL's DPOTrainer for warmup+steps steps; returns timings and the loss on `eval_pairs`."""
    from transformers import TrainerCallback
    from trl import DPOConfig as TRLConfig
    from trl import DPOTrainer

    class Pretokenized(DPOTrainer):
        # Our pairs are token ids already (random tokens, no tokenizer for a random model).
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset

    class Timer(TrainerCallback):
        def __init__(self):
            self.times, self.t = [], None

        def on_step_begin(self, args, state, control, **kw):
            sync(device)
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            sync(device)
            self.times.append(time.perf_counter() - self.t)

    from peft import LoraConfig

    n_pairs = batch * (warmup + steps)
    pair_arts = [g for g in arts]
    ds = trl_dataset(pair_arts).select(range(n_pairs))
    args = TRLConfig(
        output_dir=str(out_dir), per_device_train_batch_size=batch, gradient_accumulation_steps=1,
        gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": False},
        bf16=not tiny, use_cpu=tiny, beta=cfg.beta, learning_rate=cfg.learning_rate, max_length=4096,
        precompute_ref_log_probs=True, precompute_ref_batch_size=16 if not tiny else 4, max_steps=warmup + steps,
        logging_steps=1000, save_strategy="no", report_to="none", disable_tqdm=True, dataloader_num_workers=0,
        lr_scheduler_type="constant", seed=0,
    )
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(TARGETS), task_type="CAUSAL_LM")
    reset_peak(device)
    sync(device)
    t = time.perf_counter()
    trainer = Pretokenized(model=base, args=args, train_dataset=ds, processing_class=tiny_tokenizer(), peft_config=lora)
    sync(device)
    init_s = time.perf_counter() - t  # dominated by the reference precompute
    load_lora(trainer.model, state)

    # Loss on the same pairs as ours, before any step (eval mode: dropout off in both).
    trainer.model.eval()
    eval_ds = trainer.train_dataset.select(range(eval_pairs))
    inputs = trainer.data_collator([eval_ds[i] for i in range(eval_pairs)])
    inputs = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}
    ev = {}
    for beta in (cfg.beta, 1.0):  # beta 1 makes any difference in log-probs visible in the loss
        trainer.beta = beta
        with torch.no_grad():
            for mode in trainer._metrics.values():
                mode.clear()
            loss = float(trainer.compute_loss(trainer.model, inputs))
        m = {k: v[-1] for mode in trainer._metrics.values() for k, v in mode.items()
             if k.startswith(("rewards/margins", "logps/"))}
        ev[f"beta={beta}"] = {"loss": loss, **m}
    trainer.beta = cfg.beta
    trainer.model.train()

    timer = Timer()
    trainer.add_callback(timer)
    reset_peak(device)
    trainer.train()
    times = timer.times[warmup:]
    step = statistics.median(times)
    per_pair_ctx = pair_contexts(ArticleGroup("x", arts[0].prompt_ids, arts[0].completions, arts[0].pairs[:1], [0]))
    tokens = batch * len(per_pair_ctx)
    comp = len(arts[0].completions[0])
    flops = 2 * batch * fwd_flops(trainer.model.config, per_pair_ctx, 2 * comp)
    res = {"batch": batch, "step_s": step, "pairs_per_s": batch / step, "tokens_per_s": tokens / step,
           "peak_gib": peak_gib(device), "mfu": flops / step / PEAK_FLOPS, "step_spread_s": max(times) - min(times),
           "init_incl_ref_precompute_pairs_per_s": n_pairs / init_s, "eval": ev}
    base = trainer.model.unload()
    del trainer
    gc.collect()
    return base, res


# ----------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="toy model on CPU: checks every code path")
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/dpo_bench"))
    ap.add_argument("--prompt", type=int, default=1800)
    ap.add_argument("--completion", type=int, default=100)
    ap.add_argument("--pairs", type=int, default=3, help="pairs per article")
    ap.add_argument("--distinct", type=int, default=6, help="distinct completions per article")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--variants", default="nockpt:1:peftfp32,ckpt:2,ckpt:4,nockpt:1,nockpt:2,nockpt:3",
                    help="ours: comma list of (ckpt|nockpt):articles_per_step[:peftfp32]")
    ap.add_argument("--dedup-variant", default="ckpt:4", help="same, with 3 pairs over 4 distinct summaries ('' = skip)")
    ap.add_argument("--trl-batches", default="8", help="TRL per-device batch sizes ('' = skip TRL)")
    args = ap.parse_args()
    if args.tiny:
        args.prompt, args.completion = 48, 8
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    mcfg = model_config(args.tiny)
    cfg = DPOConfig(trainer="packed", beta=0.01, learning_rate=5e-6, lora_r=8, lora_alpha=16, lora_dropout=0.0,
                    target_modules=TARGETS, bf16=device.type == "cuda", use_gpu=device.type == "cuda")
    info = {"date": time.strftime("%Y-%m-%d"), "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "args": vars(args)}
    import transformers

    info["transformers"] = transformers.__version__
    log(f"device {info['device']}, torch {torch.__version__}, transformers {transformers.__version__}")

    from peft import get_peft_model

    from sumpref.training.packed_dpo import lora_config

    t = time.perf_counter()
    model = get_peft_model(build_model(mcfg, device, dtype), lora_config(cfg))
    torch.manual_seed(1)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    state = lora_state(model)
    set_input_cast(model, False)
    log(f"model built in {time.perf_counter() - t:.1f}s")

    max_apb = max(int(v.split(":")[1]) for v in args.variants.split(","))
    n_art = max(max_apb * (args.warmup + args.steps), 8)
    arts = make_articles(n_art, args.prompt, args.completion, args.pairs, args.distinct, mcfg.vocab_size)
    results: dict = {"info": info, "ours": {}, "trl": {}}

    rc, rr, results["ours"]["reference"] = ours_reference(model, arts, device, pairs_per_batch=12)
    log(f"ours reference: {results['ours']['reference']}")
    eval_arts = arts[:4]
    eval_pairs = sum(len(g.pairs) for g in eval_arts)
    results["ours"]["eval"] = ours_eval_loss(model, eval_arts, rc, rr, cfg, device)
    log(f"ours eval on {eval_pairs} pairs: {results['ours']['eval']}")

    def run_variant(name, spec, arts_, rc_, rr_):
        kind, apb, *flag = spec.split(":")
        load_lora(model, state)
        try:
            r = ours_train(model, arts_, rc_, rr_, cfg, device, int(apb), kind == "ckpt", args.steps, args.warmup, mcfg,
                           peft_fp32=flag == ["peftfp32"])
        except torch.OutOfMemoryError:
            r = {"error": "OOM"}
        gc.collect()
        results["ours"][name] = r
        log(f"ours {name}: {r}")
        (out / "dpo_throughput.json").write_text(json.dumps(results, indent=2))

    for spec in args.variants.split(","):
        run_variant(spec, spec, arts, rc, rr)
    if args.dedup_variant:
        darts = make_articles(n_art, args.prompt, args.completion, args.pairs, 4, mcfg.vocab_size, seed=1)
        drc, drr, _ = ours_reference(model, darts, device, pairs_per_batch=12)
        run_variant(f"dedup4:{args.dedup_variant}", args.dedup_variant, darts, drc, drr)

    load_lora(model, state)
    base = model.unload()
    del model
    gc.collect()
    for b in [int(x) for x in args.trl_batches.split(",") if x]:
        n_needed = math.ceil(b * (args.warmup + args.steps) / args.pairs) + 1
        trl_arts = arts if len(arts) >= n_needed else make_articles(n_needed, args.prompt, args.completion, args.pairs, args.distinct, mcfg.vocab_size)
        try:
            base, r = trl_run(base, trl_arts, state, cfg, device, b, args.steps, args.warmup, args.tiny, eval_pairs, out / "trl")
        except torch.OutOfMemoryError:
            r = {"error": "OOM"}
        results["trl"][f"batch{b}"] = r
        log(f"trl batch {b}: {r}")
        (out / "dpo_throughput.json").write_text(json.dumps(results, indent=2))
        reset_peak(device)

    print_table(results)


def print_table(results: dict) -> None:
    trl_ok = [v for v in results["trl"].values() if "pairs_per_s" in v]
    best = max((v["pairs_per_s"] for v in trl_ok), default=float("nan"))
    print(f"\n{results['info']['device']} {results['info']['date']} torch {results['info']['torch']} "
          f"transformers {results['info']['transformers']}")
    print("| trainer | variant | step s | pairs/s | tokens/s | peak GiB | MFU | x best TRL |")
    print("|---|---|---|---|---|---|---|---|")
    for name, v in results["ours"].items():
        if name in ("reference", "eval") or "pairs_per_s" not in v:
            if "error" in v:
                print(f"| sumpref packed | {name} | {v['error']} | | | | | |")
            continue
        print(f"| sumpref packed | {name} ({v['pairs_per_step']} pairs/step) | {v['step_s']:.3f} | {v['pairs_per_s']:.2f} | "
              f"{v['tokens_per_s']:.0f} | {v['peak_gib']:.1f} | {v['mfu']:.1%} | {v['pairs_per_s'] / best:.2f} |")
    for name, v in results["trl"].items():
        if "pairs_per_s" not in v:
            print(f"| TRL DPOTrainer | {name} | {v.get('error')} | | | | | |")
            continue
        print(f"| TRL DPOTrainer | {name}, precomputed ref | {v['step_s']:.3f} | {v['pairs_per_s']:.2f} | "
              f"{v['tokens_per_s']:.0f} | {v['peak_gib']:.1f} | {v['mfu']:.1%} | {v['pairs_per_s'] / best:.2f} |")
    print(f"reference pass: ours {results['ours']['reference']['pairs_per_s']:.2f} pairs/s; TRL DPOTrainer construction incl. precompute "
          + ", ".join(f"{k} {v['init_incl_ref_precompute_pairs_per_s']:.2f}" for k, v in results["trl"].items() if "pairs_per_s" in v))
    print(f"loss on the same pairs: ours {json.dumps(results['ours']['eval'])}")
    for k, v in results["trl"].items():
        if "eval" in v:
            print(f"                        TRL {k} {json.dumps(v['eval'])}")


if __name__ == "__main__":
    main()
