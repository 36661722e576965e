"""DPO training throughput at matched settings: sumpref's packed trainer vs TRL DPOTrainer, one card, one run.

Workload (defaults): Mistral-7B shape with random weights (no hub), bf16, SDPA, LoRA r=8
alpha=16 on q,k,v,o,gate,up,down, beta 0.01, articles with a 1,800-token prompt and 3 pairs of
100-token chosen/rejected completions. Both trainers use precomputed reference log-probs
(reference = base model, adapter off) and start from the same adapter weights.

Two memory classes, each with TRL at its best setting and ours in the same class:
- `ckpt` (gradient checkpointing on both): TRL batch 8 (`--trl-ckpt-batch`).
- `nockpt` (no checkpointing, PEFT's fp32 input cast off on both): TRL at the largest batch of
  `--trl-nockpt-batches` whose peak memory fits `--cap-gib` (80: an 80 GB card), tried
  largest first (a batch over the cap stops after one step).
Ours runs `--ours-ckpt` / `--ours-nockpt` (articles per step, optionally `:flex` for the
FlexAttention block mask, `:chunk` for chunked vocabulary log-probs and `:fuse` for the fused LoRA
forward of `sumpref.training.lora_fused`, undone after the variant: TRL always runs PEFT's own;
`:compile` for `torch.compile` of each decoder layer, dynamic shapes, also undone after the variant).
Peak memory and MFU stand beside each row; ratios are against TRL in the same class.

Parity: `fp32_parity` trains nothing; it builds a small random model in fp32 and compares our
loss and log-probs with TRL's on the same pairs (beta 1, where any log-prob difference shows);
`tests/gpu` asserts it to 1e-4. The bf16 losses of the big run are printed as what they are
(bf16 cannot show equality at that precision).

MFU counts model FLOPs of the work each trainer executes (TRL runs each prompt twice per pair):
2 x linear params per token forward plus causal attention (4 * keys * d_model per layer), times
2 for training (forward + input gradients; the frozen base needs no weight gradients;
recomputation not counted), over 989.4 TFLOP/s (H100/H200 SXM dense bf16).

Run: `python benchmarks/dpo_throughput.py --out $OUT` on one GPU; `--tiny` runs every code path
on CPU with a toy model.
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

from sumpref.config import PackedDPOConfig  # noqa: E402
from sumpref.training.lora_fused import fuse_lora_linears, unfuse_lora_linears  # noqa: E402
from sumpref.training.packed_dpo import packed_dpo_loss  # noqa: E402
from sumpref.training.packed_logprobs import PackedLogProbs  # noqa: E402
from sumpref.training.packing import ArticleGroup, pack_groups  # noqa: E402
from sumpref.training.policy import compile_layers, lora_config  # noqa: E402
from sumpref.training.reference import reference_logps  # noqa: E402

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


def autocast_dtype(device, dtype):
    return torch.bfloat16 if device.type == "cuda" and dtype == torch.bfloat16 else None


def set_input_cast(model, enabled: bool) -> None:
    for m in model.modules():
        if hasattr(m, "lora_A") and hasattr(m, "_cast_input_dtype"):
            m.cast_input_dtype_enabled = enabled


def ours_eval_loss(model, arts, rc, rr, cfg, device, dtype) -> dict:
    """Loss and mean log-probs of ours on `arts`'s pairs (eval mode), at cfg.beta and at beta 1."""
    model.eval()
    out = {}
    scorer = PackedLogProbs(model, autocast_dtype(device, dtype))
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


VARIANT_FLAGS = ("flex", "chunk", "fuse", "compile")


def parse_variant(spec: str) -> tuple[int, dict, set[str]]:
    """"4:flex:chunk:fuse" -> (4 articles per step, PackedLogProbs switches, model switches {"fuse"})."""
    apb, *flags = spec.split(":")
    unknown = set(flags) - set(VARIANT_FLAGS)
    if unknown:
        raise SystemExit(f"variant {spec!r}: unknown flags {sorted(unknown)} ({', '.join(VARIANT_FLAGS)})")
    return int(apb), {"attention": "flex" if "flex" in flags else "dense",
                      "logprob_chunk_size": 1024 if "chunk" in flags else 0}, set(flags) & {"fuse", "compile"}


def _decoder_layers(model):
    return model.get_base_model().get_decoder().layers


def ours_train(model, arts, rc, rr, cfg, device, dtype, spec, checkpointing, steps, warmup, mcfg):
    """One variant's timed steps; LoRA fusion and layer compilation hold for its duration only."""
    switches = parse_variant(spec)[2]
    fused = fuse_lora_linears(model) if "fuse" in switches else 0
    if "compile" in switches:
        compile_layers(model)  # the packed trainer's `dpo.compile_layers`
    try:
        return {**_ours_train(model, arts, rc, rr, cfg, device, dtype, spec, checkpointing, steps, warmup, mcfg),
                "fused_lora_layers": fused, "compiled_layers": "compile" in switches}
    finally:
        unfuse_lora_linears(model)
        for layer in _decoder_layers(model):
            layer._compiled_call_impl = None  # what nn.Module.compile set: back to the eager call


def _ours_train(model, arts, rc, rr, cfg, device, dtype, spec, checkpointing, steps, warmup, mcfg):
    apb, switches, _ = parse_variant(spec)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_disable()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, fused=device.type == "cuda")
    set_input_cast(model, False)  # both classes: bf16 activations into the adapter under autocast
    scorer = PackedLogProbs(model, autocast_dtype(device, dtype), **switches)
    batches = [arts[i : i + apb] for i in range(0, len(arts) - apb + 1, apb)]
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
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        if s >= warmup:
            times.append(time.perf_counter() - t)
            losses.append(float(loss.detach()))
    step = statistics.median(times)
    pairs = sum(len(g.pairs) for g in batches[0])
    tokens = sum(g.n_tokens for g in batches[0])
    flops = 2 * sum(fwd_flops(mcfg, packed_contexts(g), sum(map(len, g.completions))) for g in batches[0])
    profile = None
    if device.type == "cuda":
        try:
            profile = profile_step(scorer, opt, batches[0], rc, rr, cfg, device)
        except Exception as e:  # noqa: BLE001 - the timing above stands without its profile
            profile = [f"profile failed: {type(e).__name__}: {str(e)[:200]}"]
    del opt
    return {"step_s": step, "pairs_per_s": pairs / step, "tokens_per_s": tokens / step, "peak_gib": peak_gib(device),
            "mfu": flops / step / PEAK_FLOPS, "pairs_per_step": pairs, "step_spread_s": max(times) - min(times),
            "mean_loss": statistics.mean(losses), **switches, **({"profile_top_ops": profile} if profile else {})}


def profile_step(scorer, opt, groups, rc, rr, cfg, device, top: int = 12) -> list:
    """Where one step's GPU time goes: the top ops by self CUDA time (ms), for the results file."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        batch = pack_groups(groups, 0).to(device)
        rows = torch.tensor(batch.rows)
        packed_dpo_loss(scorer, batch, rc[rows], rr[rows], cfg).losses.mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
    ops = sorted(prof.key_averages(), key=lambda e: e.self_device_time_total, reverse=True)[:top]
    return [[e.key[:60], round(e.self_device_time_total / 1e3, 1), e.count] for e in ops]


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


def trl_trainer(base, arts, cfg, device, *, batch, max_steps, half, checkpointing, n_pairs, out_dir, callbacks=()):
    """TRL's DPOTrainer on pre-tokenized pairs, reference log-probs precomputed (in construction)."""
    from peft import LoraConfig
    from trl import DPOConfig as TRLConfig
    from trl import DPOTrainer

    class Pretokenized(DPOTrainer):
        # Our pairs are token ids already (random tokens, no tokenizer for a random model).
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset

    args = TRLConfig(
        output_dir=str(out_dir), per_device_train_batch_size=batch, gradient_accumulation_steps=1,
        gradient_checkpointing=checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if checkpointing else None,
        bf16=half, use_cpu=device.type == "cpu", beta=cfg.beta, learning_rate=cfg.learning_rate, max_length=4096,
        precompute_ref_log_probs=True, precompute_ref_batch_size=16 if device.type == "cuda" else 4,
        max_steps=max_steps, logging_steps=1000, save_strategy="no", report_to="none", disable_tqdm=True,
        dataloader_num_workers=0, lr_scheduler_type="constant", seed=0,
    )
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(TARGETS), task_type="CAUSAL_LM")
    ds = trl_dataset(arts).select(range(n_pairs))
    return Pretokenized(model=base, args=args, train_dataset=ds, processing_class=tiny_tokenizer(), peft_config=lora,
                        callbacks=list(callbacks))


def trl_eval_loss(trainer, eval_pairs: int, cfg, device) -> dict:
    """TRL's loss and mean log-probs on its first `eval_pairs` pairs (eval mode), at cfg.beta and beta 1."""
    trainer.model.eval()
    eval_ds = trainer.train_dataset.select(range(eval_pairs))
    inputs = trainer.data_collator([eval_ds[i] for i in range(eval_pairs)])
    inputs = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}
    ev = {}
    for beta in (cfg.beta, 1.0):
        trainer.beta = beta
        # The Trainer's own autocast (accelerate's, bf16) is applied to the model only inside train();
        # with PEFT's fp32 input cast switched off the LoRA matmuls need it here too.
        with torch.no_grad(), trainer.accelerator.autocast():
            for mode in trainer._metrics.values():
                mode.clear()
            loss = float(trainer.compute_loss(trainer.model, inputs))
        m = {k: v[-1] for mode in trainer._metrics.values() for k, v in mode.items()
             if k.startswith(("rewards/margins", "logps/"))}
        ev[f"beta={beta}"] = {"loss": loss, **m}
    trainer.beta = cfg.beta
    trainer.model.train()
    return ev


def trl_run(base, arts, state, cfg, device, dtype, batch, steps, warmup, eval_pairs, out_dir, *, checkpointing,
            cap_gib=None):
    """Train TRL for warmup+steps steps; returns (base model, timings and its loss on `eval_pairs`).

    Without checkpointing PEFT's fp32 input cast is switched off, as ours does. With `cap_gib`, a
    run whose peak memory passes the cap after its first step stops there (`over_cap`)."""
    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        def __init__(self):
            self.times, self.t, self.over = [], None, False

        def on_step_begin(self, args, state, control, **kw):
            sync(device)
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            sync(device)
            self.times.append(time.perf_counter() - self.t)
            if cap_gib is not None and peak_gib(device) > cap_gib:
                self.over, control.should_training_stop = True, True

    n_pairs = batch * (warmup + steps)
    # The base model is shared between runs: a checkpointed run leaves HF's checkpointing switched on
    # in its layers, and TRL only switches it on (never off), so set it here for this run.
    if not checkpointing:
        base.gradient_checkpointing_disable()
    timer = Timer()
    reset_peak(device)
    sync(device)
    t = time.perf_counter()
    trainer = trl_trainer(base, arts, cfg, device, batch=batch, max_steps=warmup + steps, half=dtype == torch.bfloat16,
                          checkpointing=checkpointing, n_pairs=n_pairs, out_dir=out_dir, callbacks=[timer])
    sync(device)
    init_s = time.perf_counter() - t  # dominated by the reference precompute
    load_lora(trainer.model, state)
    if not checkpointing:
        set_input_cast(trainer.model, False)
    ev = trl_eval_loss(trainer, eval_pairs, cfg, device)
    reset_peak(device)
    trainer.train()
    res = {"batch": batch, "peak_gib": peak_gib(device), "checkpointing": checkpointing,
           "fp32_input_cast": checkpointing}
    if timer.over:
        res["over_cap"] = f"peak {res['peak_gib']:.1f} GiB > {cap_gib} GiB after one step"
    else:
        times = timer.times[warmup:]
        step = statistics.median(times)
        per_pair_ctx = pair_contexts(ArticleGroup("x", arts[0].prompt_ids, arts[0].completions, arts[0].pairs[:1], [0]))
        comp = len(arts[0].completions[0])
        flops = 2 * batch * fwd_flops(trainer.model.config, per_pair_ctx, 2 * comp)
        res.update({"step_s": step, "pairs_per_s": batch / step, "tokens_per_s": batch * len(per_pair_ctx) / step,
                    "mfu": flops / step / PEAK_FLOPS, "step_spread_s": max(times) - min(times),
                    "init_incl_ref_precompute_pairs_per_s": n_pairs / init_s, "eval": ev})
    base = trainer.model.unload()
    del trainer
    gc.collect()
    return base, res


# ----------------------------------------------------------------------------- fp32 parity


def fp32_parity(device: torch.device, out_dir: Path, n_articles: int = 4) -> dict:
    """Ours vs TRL in fp32 on a small random Mistral: loss (beta 1) and mean log-probs of the same pairs."""
    from peft import get_peft_model

    mcfg = model_config(tiny=True)
    cfg = PackedDPOConfig(beta=0.1, learning_rate=5e-6, lora_r=8, lora_alpha=16, lora_dropout=0.0, target_modules=TARGETS)
    model = get_peft_model(build_model(mcfg, device, torch.float32), lora_config(cfg))
    torch.manual_seed(1)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    state = lora_state(model)
    arts = make_articles(n_articles, 64, 12, 3, 6, mcfg.vocab_size, seed=2)
    rc, rr, _ = ours_reference(model, arts, device, pairs_per_batch=12)
    ours = ours_eval_loss(model, arts, rc, rr, cfg, device, torch.float32)["beta=1.0"]
    base = model.unload()
    pairs = sum(len(g.pairs) for g in arts)
    trainer = trl_trainer(base, arts, cfg, device, batch=2, max_steps=1, half=False, checkpointing=False,
                          n_pairs=pairs, out_dir=out_dir / "parity")
    load_lora(trainer.model, state)
    trl = trl_eval_loss(trainer, pairs, cfg, device)["beta=1.0"]
    keys = ("loss", "logps/chosen", "logps/rejected")
    return {"ours": {k: ours[k] for k in keys}, "trl": {k: trl[k] for k in keys},
            "max_abs_diff": max(abs(ours[k] - trl[k]) for k in keys)}


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
    ap.add_argument("--ours-ckpt", default="8:flex:chunk:fuse,8:flex:chunk:fuse:compile",
                    help="ours, checkpointed: articles per step[:flex][:chunk][:fuse][:compile]")
    ap.add_argument("--ours-nockpt", default="3:flex:chunk:fuse:compile,4:flex:chunk:fuse:compile",
                    help="ours, not checkpointed: same")
    ap.add_argument("--trl-ckpt-batch", type=int, default=8, help="TRL checkpointed batch (0: skip)")
    ap.add_argument("--trl-nockpt-batches", default="4,3,2", help="TRL unchecked batches, largest first ('': skip)")
    ap.add_argument("--cap-gib", type=float, default=80.0, help="memory of the card the unchecked class must fit")
    args = ap.parse_args()
    if args.tiny:
        args.prompt, args.completion = 48, 8
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    mcfg = model_config(args.tiny)
    cfg = PackedDPOConfig(beta=0.01, learning_rate=5e-6, lora_r=8, lora_alpha=16, lora_dropout=0.0,
                          target_modules=TARGETS, bf16=device.type == "cuda", use_gpu=device.type == "cuda")
    import transformers

    info = {"date": time.strftime("%Y-%m-%d"), "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "transformers": transformers.__version__, "args": vars(args)}
    results: dict = {"info": info, "ours": {}, "trl": {}}
    save = lambda: (out / "dpo_throughput.json").write_text(json.dumps(results, indent=2))  # noqa: E731
    log(f"device {info['device']}, torch {torch.__version__}, transformers {transformers.__version__}")

    results["fp32_parity"] = fp32_parity(device, out)
    log(f"fp32 parity (small model, beta 1): {results['fp32_parity']}")
    save()

    from peft import get_peft_model

    t = time.perf_counter()
    model = get_peft_model(build_model(mcfg, device, dtype), lora_config(cfg))
    torch.manual_seed(1)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    state = lora_state(model)
    log(f"model built in {time.perf_counter() - t:.1f}s")

    variants = [("ckpt", v) for v in args.ours_ckpt.split(",") if v] + [("nockpt", v) for v in args.ours_nockpt.split(",") if v]
    max_apb = max(parse_variant(v)[0] for _, v in variants)
    trl_batches = [int(b) for b in args.trl_nockpt_batches.split(",") if b] + [args.trl_ckpt_batch]
    n_art = max(max_apb * (args.warmup + args.steps), math.ceil(max(trl_batches) * (args.warmup + args.steps) / args.pairs), 8)
    arts = make_articles(n_art, args.prompt, args.completion, args.pairs, args.distinct, mcfg.vocab_size)

    rc, rr, results["ours"]["reference"] = ours_reference(model, arts, device, pairs_per_batch=12)
    log(f"ours reference: {results['ours']['reference']}")
    eval_arts = arts[:4]
    eval_pairs = sum(len(g.pairs) for g in eval_arts)
    results["ours"]["eval"] = ours_eval_loss(model, eval_arts, rc, rr, cfg, device, dtype)
    for cls, spec in variants:
        load_lora(model, state)
        try:
            r = ours_train(model, arts, rc, rr, cfg, device, dtype, spec, cls == "ckpt", args.steps, args.warmup, mcfg)
        except torch.OutOfMemoryError:
            r = {"error": "OOM"}
        except Exception as e:  # noqa: BLE001 - one failing switch (e.g. a flex compile) must not lose the GPU run
            r = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        results["ours"][f"{cls}:{spec}"] = r
        log(f"ours {cls}:{spec}: {r}")
        save()

    load_lora(model, state)
    assert unfuse_lora_linears(model) == 0  # every variant undid its fusion; unload() drops the layers anyway
    base = model.unload()
    base.set_attn_implementation("sdpa")  # TRL runs stock SDPA (a flex variant switched the model)
    del model
    gc.collect()
    runs = ([("ckpt", args.trl_ckpt_batch)] if args.trl_ckpt_batch else []) + \
        [("nockpt", int(b)) for b in args.trl_nockpt_batches.split(",") if b]
    for cls, b in runs:
        if cls == "nockpt" and any("pairs_per_s" in v for k, v in results["trl"].items() if k.startswith("nockpt")):
            continue  # a larger batch already fit the cap
        try:
            base, r = trl_run(base, arts, state, cfg, device, dtype, b, args.steps, args.warmup, eval_pairs, out / "trl",
                              checkpointing=cls == "ckpt", cap_gib=args.cap_gib if cls == "nockpt" else None)
        except torch.OutOfMemoryError:
            r = {"batch": b, "error": "OOM"}
            reset_peak(device)
        results["trl"][f"{cls}:batch{b}"] = r
        log(f"trl {cls} batch {b}: {r}")
        save()
    print_table(results)


def print_table(results: dict) -> None:
    info = results["info"]
    print(f"\n{info['device']} {info['date']} torch {info['torch']} transformers {info['transformers']}")
    print("| class | trainer | setting | step s | pairs/s | peak GiB | MFU | x TRL (same class) |")
    print("|---|---|---|---|---|---|---|---|")
    for cls in ("ckpt", "nockpt"):
        trl = [(k, v) for k, v in results["trl"].items() if k.startswith(cls + ":")]
        best = max((v["pairs_per_s"] for _, v in trl if "pairs_per_s" in v), default=float("nan"))
        for k, v in trl:
            setting = f"batch {v['batch']}" + (", fp32 cast off" if cls == "nockpt" else "")
            if "pairs_per_s" not in v:
                print(f"| {cls} | TRL DPOTrainer | {setting} | {v.get('over_cap') or v.get('error')} | | | | |")
                continue
            print(f"| {cls} | TRL DPOTrainer | {setting} | {v['step_s']:.3f} | {v['pairs_per_s']:.2f} | "
                  f"{v['peak_gib']:.1f} | {v['mfu']:.1%} | 1.00 |")
        for k, v in results["ours"].items():
            if not k.startswith(cls + ":"):
                continue
            if "pairs_per_s" not in v:
                print(f"| {cls} | sumpref packed | {k} | {v.get('error')} | | | | |")
                continue
            setting = f"{k.split(':', 1)[1]} ({v['pairs_per_step']} pairs/step)"
            if cls == "nockpt" and v["peak_gib"] > results["info"]["args"]["cap_gib"]:
                setting += f", OVER the {results['info']['args']['cap_gib']:.0f} GiB cap"
            print(f"| {cls} | sumpref packed | {setting} | {v['step_s']:.3f} | {v['pairs_per_s']:.2f} | "
                  f"{v['peak_gib']:.1f} | {v['mfu']:.1%} | {v['pairs_per_s'] / best:.2f} |")
    print(f"reference pass: ours {results['ours']['reference']['pairs_per_s']:.2f} pairs/s; TRL construction incl. precompute "
          + ", ".join(f"{k} {v['init_incl_ref_precompute_pairs_per_s']:.2f}" for k, v in results["trl"].items()
                      if "init_incl_ref_precompute_pairs_per_s" in v))
    print(f"fp32 parity (small model, beta 1): {json.dumps(results['fp32_parity'])}")
    for k, v in results["ours"].items():
        if "profile_top_ops" in v:
            print(f"one step of ours {k}, top ops by GPU time [op, ms, calls]: {json.dumps(v['profile_top_ops'])}")
    print(f"bf16 loss on the same pairs (not a parity check): ours {json.dumps(results['ours']['eval'])}")
    for k, v in results["trl"].items():
        if "eval" in v:
            print(f"                                               TRL {k} {json.dumps(v['eval'])}")


if __name__ == "__main__":
    main()
