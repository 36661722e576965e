"""Resumable checkpoints of the packed trainer (plain and DDP runs; DeepSpeed keeps its own).

Layout: `{output_dir}/checkpoints/step-N/` holds `adapter/` (PEFT `save_pretrained`),
`training_state.pt` (optimizer, scheduler, step, Python/NumPy/torch RNG states) and a `COMPLETE`
marker written last, so a checkpoint without it (a crash mid-write) is never loaded. Only the
newest `keep` complete checkpoints are kept. On a remote root (`output_dir` inside a staging
folder, `artifacts.mirrored`) each complete checkpoint is uploaded at once, `COMPLETE` last, and
superseded ones are deleted from the store too, so a killed run resumes from the store anywhere.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import torch

from sumpref import faults
from sumpref.artifacts import mirror_tree, unmirror_tree

CHECKPOINT_DIR = "checkpoints"
COMPLETE = "COMPLETE"


def _step(path: Path) -> int:
    return int(path.name.split("-")[1])


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete `step-N` checkpoint under `output_dir`, or None."""
    root = Path(output_dir) / CHECKPOINT_DIR
    done = [p for p in root.glob("step-*") if (p / COMPLETE).exists()] if root.exists() else []
    return max(done, key=_step, default=None)


def save_checkpoint(output_dir, model, optimizer, scheduler, step: int, keep: int) -> Path:
    """Write `step-N` (marker last), then delete all but the newest `keep` checkpoints."""
    path = Path(output_dir) / CHECKPOINT_DIR / f"step-{step}"
    if path.exists():
        shutil.rmtree(path)
    model.save_pretrained(str(path / "adapter"))
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step, "rng": _rng_state()},
        path / "training_state.pt",
    )
    (path / COMPLETE).write_text(str(step))  # last: its presence proves the checkpoint is whole
    mirror_tree(path, last=COMPLETE)
    faults.point("checkpoint")  # resume tests kill here (no-op unless $SUMPREF_KILL_AT is set)
    older = sorted((p for p in path.parent.glob("step-*") if p != path), key=_step)
    for p in older[: max(0, len(older) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
        unmirror_tree(p)
    return path


def load_checkpoint(path: Path, model, optimizer, scheduler) -> int:
    """Restore adapter weights, optimizer, scheduler and RNG from `path`; returns its step."""
    from peft.utils import load_peft_weights, set_peft_model_state_dict

    device = next(p for p in model.parameters() if p.requires_grad).device
    set_peft_model_state_dict(model, load_peft_weights(str(path / "adapter"), device=str(device)))
    state = torch.load(path / "training_state.pt", map_location="cpu", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"])
    return int(state["step"])


def deepspeed_checkpoint_dir(output_dir: str | Path) -> Path:
    """Where a DeepSpeed engine saves and resumes (its own sharded format)."""
    return Path(output_dir) / CHECKPOINT_DIR / "deepspeed"
