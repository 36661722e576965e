"""DPO losses on 3-element tensors against hand computations (no model)."""

import math

import pytest
import torch

from sumpref.training.losses import dpo_loss, preference_metrics

# policy chosen/rejected, reference chosen/rejected; margins h = (pc-rc) - (pr-rr) = [2, -1, 0]
PC = torch.tensor([-10.0, -20.0, -5.0])
PR = torch.tensor([-12.0, -18.0, -6.0])
RC = torch.tensor([-11.0, -19.0, -5.0])
RR = torch.tensor([-11.0, -18.0, -6.0])
H = [2.0, -1.0, 0.0]
BETA = 0.5


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _close(t: torch.Tensor, expected: list[float]) -> None:
    assert torch.allclose(t, torch.tensor(expected), atol=1e-6), (t, expected)


def test_sigmoid_matches_hand_values():
    out = dpo_loss(PC, PR, RC, RR, beta=BETA)
    _close(out.losses, [-math.log(_sig(BETA * h)) for h in H])
    _close(out.chosen_rewards, [BETA * 1, BETA * -1, 0.0])
    _close(out.rejected_rewards, [BETA * -1, 0.0, 0.0])
    assert not out.chosen_rewards.requires_grad


def test_sigmoid_label_smoothing():
    eps = 0.1
    out = dpo_loss(PC, PR, RC, RR, beta=BETA, label_smoothing=eps)
    _close(out.losses, [-(1 - eps) * math.log(_sig(BETA * h)) - eps * math.log(_sig(-BETA * h)) for h in H])


def test_robust():
    eps = 0.2
    out = dpo_loss(PC, PR, RC, RR, beta=BETA, loss_type="robust", label_smoothing=eps)
    want = [(-(1 - eps) * math.log(_sig(BETA * h)) + eps * math.log(_sig(-BETA * h))) / (1 - 2 * eps) for h in H]
    _close(out.losses, want)


def test_ipo():
    out = dpo_loss(PC, PR, RC, RR, beta=BETA, loss_type="ipo")
    _close(out.losses, [(h - 1 / (2 * BETA)) ** 2 for h in H])  # 1/(2*0.5) = 1 -> [1, 4, 1]
    _close(out.losses, [1.0, 4.0, 1.0])


def test_sppo_hard_and_apo_zero():
    cr, rr = [1.0, -1.0, 0.0], [-1.0, 0.0, 0.0]
    out = dpo_loss(PC, PR, RC, RR, beta=BETA, loss_type="sppo_hard")
    _close(out.losses, [(c - 1) ** 2 + (r + 1) ** 2 for c, r in zip(cr, rr)])
    out = dpo_loss(PC, PR, RC, RR, beta=BETA, loss_type="apo_zero")
    _close(out.losses, [1 - _sig(BETA * c) + _sig(BETA * r) for c, r in zip(cr, rr)])


def test_length_normalised_divides_by_token_counts():
    nc, nr = torch.tensor([2.0, 4.0, 1.0]), torch.tensor([1.0, 2.0, 5.0])
    out = dpo_loss(PC, PR, RC, RR, beta=BETA, chosen_tokens=nc, rejected_tokens=nr, length_normalize=True)
    # per-token ratios: chosen [1/2, -1/4, 0], rejected [-1, 0, 0] -> margins [1.5, -0.25, 0]
    _close(out.losses, [-math.log(_sig(BETA * h)) for h in [1.5, -0.25, 0.0]])
    with pytest.raises(ValueError, match="token"):
        dpo_loss(PC, PR, RC, RR, beta=BETA, length_normalize=True)


def test_gradient_pushes_chosen_up():
    pc = PC.clone().requires_grad_(True)
    dpo_loss(pc, PR, RC, RR, beta=BETA).losses.sum().backward()
    assert (pc.grad < 0).all()  # increasing chosen log-prob lowers the loss


def test_metrics_and_unknown_type():
    m = preference_metrics(dpo_loss(PC, PR, RC, RR, beta=BETA))
    assert m["rewards/accuracy"] == pytest.approx(1 / 3)
    assert m["rewards/margin"] == pytest.approx(BETA * sum(H) / 3)
    with pytest.raises(ValueError, match="loss_type"):
        dpo_loss(PC, PR, RC, RR, beta=BETA, loss_type="hinge")
