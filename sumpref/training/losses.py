"""DPO-family losses as small pure functions.

Inputs are per-pair sequence log-probabilities (summed over completion tokens) of the policy and
of the frozen reference, shape `[n_pairs]`. Outputs are per-pair losses (reduce them yourself:
the trainer divides by the pairs of a whole optimizer step, not of one micro-batch) and the
implicit rewards `beta * (policy - reference)`, detached, for logging margins and accuracy.

`length_normalize=True` divides every log-prob by its completion's token count first (the
per-token average), which removes the pull towards short summaries that summed log-probs carry;
IPO is usually run this way.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

LOSS_TYPES = ("sigmoid", "ipo", "robust", "sppo_hard", "apo_zero")


class DPOLossOutput(NamedTuple):
    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


def _smoothed_sigmoid(margin: torch.Tensor, beta: float, label_smoothing: float) -> torch.Tensor:
    # Conservative DPO: with probability `label_smoothing` the label is flipped.
    return -F.logsigmoid(beta * margin) * (1 - label_smoothing) - F.logsigmoid(-beta * margin) * label_smoothing


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    *,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    chosen_tokens: torch.Tensor | None = None,
    rejected_tokens: torch.Tensor | None = None,
    length_normalize: bool = False,
) -> DPOLossOutput:
    """Per-pair DPO losses and implicit rewards (see the module docstring)."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type {loss_type!r} unknown; choose one of {LOSS_TYPES}")
    ref_chosen = ref_chosen.to(policy_chosen)
    ref_rejected = ref_rejected.to(policy_rejected)
    if length_normalize:
        if chosen_tokens is None or rejected_tokens is None:
            raise ValueError("length_normalize needs chosen_tokens and rejected_tokens")
        nc = chosen_tokens.to(policy_chosen).clamp(min=1)
        nr = rejected_tokens.to(policy_rejected).clamp(min=1)
        policy_chosen, ref_chosen = policy_chosen / nc, ref_chosen / nc
        policy_rejected, ref_rejected = policy_rejected / nr, ref_rejected / nr

    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    margin = chosen_ratio - rejected_ratio

    if loss_type == "sigmoid":
        losses = _smoothed_sigmoid(margin, beta, label_smoothing)
    elif loss_type == "robust":
        # Unbiased under label noise (Chowdhury et al. 2024): the flipped term enters with a minus sign.
        losses = (
            -F.logsigmoid(beta * margin) * (1 - label_smoothing) + F.logsigmoid(-beta * margin) * label_smoothing
        ) / (1 - 2 * label_smoothing)
    elif loss_type == "ipo":
        losses = (margin - 1 / (2 * beta)) ** 2
    elif loss_type == "sppo_hard":
        losses = (chosen_ratio - 0.5 / beta) ** 2 + (rejected_ratio + 0.5 / beta) ** 2
    else:  # apo_zero
        losses = (1 - torch.sigmoid(beta * chosen_ratio)) + torch.sigmoid(beta * rejected_ratio)

    return DPOLossOutput(losses, (beta * chosen_ratio).detach(), (beta * rejected_ratio).detach())


def preference_metrics(out: DPOLossOutput) -> dict[str, float]:
    """Mean loss, rewards, margin and accuracy (share of pairs with chosen reward > rejected)."""
    margin = out.chosen_rewards - out.rejected_rewards
    return {
        "loss": float(out.losses.detach().mean()),
        "rewards/chosen": float(out.chosen_rewards.mean()),
        "rewards/rejected": float(out.rejected_rewards.mean()),
        "rewards/margin": float(margin.mean()),
        "rewards/accuracy": float((margin > 0).float().mean()),
    }
