"""Tests of ser_lib.losses against explicit loops (eqns 1 and 6)."""

import math

import numpy as np
import pytest
import torch

from ser_lib.losses import (
    combined_loss,
    pseudo_ce_loss,
    reconstruction_loss,
)
from ser_lib.schedules import CosineSchedule


def test_reconstruction_loss_eqn1():
    g = torch.Generator().manual_seed(0)
    zt = torch.randn(2, 5, 3, generator=g)
    zs = torch.randn(2, 5, 3, generator=g, requires_grad=True)
    mask = torch.tensor(
        [[True, False, True, False, False], [False, True, True, True, False]]
    )
    loss = reconstruction_loss(zt, zs, mask)
    total, count = 0.0, 0
    for b in range(2):
        for t in range(5):
            if mask[b, t]:
                total += sum(
                    (float(zt[b, t, d]) - float(zs[b, t, d].detach())) ** 2
                    for d in range(3)
                )
                count += 1
    assert float(loss.detach()) == pytest.approx(total / count, rel=1e-6)
    loss.backward()
    assert torch.all(zs.grad[~mask] == 0) and zs.grad[mask].abs().sum() > 0


def test_reconstruction_loss_teacher_is_detached_and_empty_mask():
    zt = torch.randn(1, 3, 2, requires_grad=True)
    zs = torch.randn(1, 3, 2, requires_grad=True)
    reconstruction_loss(zt, zs, torch.tensor([[True, True, False]])).backward()
    assert zt.grad is None
    empty = reconstruction_loss(zt, zs, torch.zeros(1, 3, dtype=torch.bool))
    assert float(empty.detach()) == 0.0 and empty.requires_grad
    with pytest.raises(ValueError, match="mask"):
        reconstruction_loss(zt, zs, torch.ones(1, 3))


def test_pseudo_ce_loss_eqn6_against_loop():
    g = torch.Generator().manual_seed(1)
    zs = torch.randn(2, 4, 3, generator=g, requires_grad=True)
    protos = torch.randn(5, 3, generator=g, requires_grad=True)
    targets = torch.randint(5, (2, 4), generator=g)
    mask = torch.tensor([[True, True, False, False], [False, True, False, True]])
    tau = 0.1
    loss = pseudo_ce_loss(zs, protos, targets, mask, tau=tau)
    z_np, p_np = zs.detach().double().numpy(), protos.detach().double().numpy()
    losses = []
    for b in range(2):
        for t in range(4):
            if not mask[b, t]:
                continue
            logits = [
                z_np[b, t]
                @ p_np[k]
                / (np.linalg.norm(z_np[b, t]) * np.linalg.norm(p_np[k]))
                / tau
                for k in range(5)
            ]
            log_norm = math.log(sum(math.exp(v) for v in logits))
            losses.append(log_norm - logits[int(targets[b, t])])
    assert float(loss.detach()) == pytest.approx(np.mean(losses), rel=1e-5)
    loss.backward()
    assert protos.grad is None  # prototypes are detached
    assert torch.all(zs.grad[~mask] == 0) and zs.grad[mask].abs().sum() > 0


def test_pseudo_ce_loss_unmasked_targets_ignored_and_empty():
    zs = torch.randn(1, 3, 2)
    protos = torch.randn(4, 2)
    mask = torch.tensor([[True, False, False]])
    a = pseudo_ce_loss(zs, protos, torch.tensor([[1, 0, 0]]), mask)
    b = pseudo_ce_loss(zs, protos, torch.tensor([[1, 3, 2]]), mask)
    assert torch.equal(a, b)
    empty = pseudo_ce_loss(
        zs,
        protos,
        torch.zeros(1, 3, dtype=torch.long),
        ~torch.ones(1, 3, dtype=torch.bool),
    )
    assert float(empty.detach()) == 0.0


def test_combined_loss():
    assert float(
        combined_loss(torch.tensor(3.0), torch.tensor(1.0), 0.25)
    ) == pytest.approx(1.5)
    assert float(combined_loss(torch.tensor(3.0), torch.tensor(1.0), 1.0)) == 3.0
    with pytest.raises(ValueError, match="lam"):
        combined_loss(torch.tensor(1.0), torch.tensor(1.0), 1.2)


def test_lambda_ramp_down():
    ramp = CosineSchedule(start=1.0, end=0.5)
    assert ramp(0.0) == 1.0 and ramp(1.0) == pytest.approx(0.5)
    assert ramp(-0.3) == 1.0 and ramp(1.7) == pytest.approx(0.5)
    values = [ramp(p) for p in np.linspace(0, 1, 101)]
    assert all(a >= b for a, b in zip(values[:-1], values[1:], strict=True))
    assert values[50] == pytest.approx(0.75)
    # cosine shape: a quarter of the way, 0.5 + 0.5 * (1 + cos(pi/4)) / 2
    assert ramp(0.25) == pytest.approx(0.5 + 0.25 * (1 + math.sqrt(0.5)))
    other = CosineSchedule(start=0.8, end=0.2)
    assert other(0.0) == pytest.approx(0.8) and other(1.0) == pytest.approx(0.2)
