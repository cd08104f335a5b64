"""Multi-task weighting, fused emotion loss, the self-contrastive losses against
hand-computed values, and the task heads' fusion settings."""

import math
from functools import partial

import pytest
import torch
from torch import nn

from ser_lib.models.encoder_adapters import BottleneckAdapter
from ser_lib.models.task_heads import (
    ConcatFusion,
    MultiTaskHead,
    NoFusion,
    SharedFusion,
    TaskBranch,
)
from ser_lib.multitask_losses import (
    auxiliary_weighted_loss,
    fused_cross_entropy,
    fused_probabilities,
    scl_cos,
    scl_norm,
)

# Two utterances, three 2-d task embeddings each.
X_E = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
X_G = torch.tensor([[0.0, 1.0], [0.0, -1.0]])
X_S = torch.tensor([[3.0, 4.0], [1.0, 2.0]])


def test_scl_norm_hand_computed():
    # Utterance 1: |e-g| = sqrt(2), |e-s| = sqrt(4 + 16), |g-s| = sqrt(9 + 9).
    # Utterance 2: |e-g| = 3, |e-s| = 1, |g-s| = sqrt(1 + 9).
    first = math.sqrt(2) + math.sqrt(20) + math.sqrt(18)
    second = 3 + 1 + math.sqrt(10)
    expected = (first + second) / 2
    assert float(scl_norm([X_E, X_G, X_S])) == pytest.approx(expected)
    assert float(scl_norm([X_E, X_G, X_S], sign="paper")) == pytest.approx(-expected)
    assert float(scl_norm([X_E, X_G])) == pytest.approx((math.sqrt(2) + 3) / 2)
    with pytest.raises(ValueError, match="sign must be one of"):
        scl_norm([X_E, X_G], sign="minus")
    with pytest.raises(ValueError, match="2\\+ embeddings"):
        scl_norm([X_E])


def test_scl_cos_hand_computed():
    # Utterance 1: cos(e, g) = 0, cos(e, s) = 3/5, cos(g, s) = 4/5.
    # Utterance 2: cos(e, g) = -1, cos(e, s) = 2/sqrt(5), cos(g, s) = -2/sqrt(5).
    expected = -((0 + 0.6 + 0.8) + (-1 + 2 / math.sqrt(5) - 2 / math.sqrt(5))) / 2
    assert float(scl_cos([X_E, X_G, X_S])) == pytest.approx(expected)

    # Printed form: -sum over pairs of mean_d cos(a_d - b_d).
    def literal(a, b):
        return [
            (math.cos(a[i][0] - b[i][0]) + math.cos(a[i][1] - b[i][1])) / 2
            for i in range(2)
        ]

    pairs = [
        literal(X_E.tolist(), X_G.tolist()),
        literal(X_E.tolist(), X_S.tolist()),
        literal(X_G.tolist(), X_S.tolist()),
    ]
    paper = -sum(sum(p) for p in pairs) / 2
    assert float(scl_cos([X_E, X_G, X_S], form="paper")) == pytest.approx(paper)
    # Identical embeddings: the minimum of both forms, -(number of pairs).
    assert float(scl_cos([X_S, X_S, X_S])) == pytest.approx(-3.0)
    assert float(scl_cos([X_S, X_S, X_S], form="paper")) == pytest.approx(-3.0)
    with pytest.raises(ValueError, match="form must be one of"):
        scl_cos([X_E, X_G], form="typo")


def _minimise(loss_fn, steps=20):
    params = [x.clone().requires_grad_() for x in (X_E, X_G, X_S)]
    optimizer = torch.optim.SGD(params, lr=0.05)
    for _ in range(steps):
        optimizer.zero_grad()
        loss_fn(params).backward()
        optimizer.step()
    return [p.detach() for p in params]


def test_minimising_scl_moves_embeddings_as_its_sign_says():
    distance = float(scl_norm([X_E, X_G, X_S]))
    similarity = -float(scl_cos([X_E, X_G, X_S]))
    assert float(scl_norm(_minimise(scl_norm))) < distance  # intended: together
    assert float(scl_norm(_minimise(partial(scl_norm, sign="paper")))) > distance
    assert -float(scl_cos(_minimise(scl_cos))) > similarity


def test_auxiliary_weighting_matches_the_paper_equations():
    emotion, asr, gender, style = (torch.tensor(v) for v in (1.0, 2.0, 3.0, 5.0))
    # eqn 4, lambda = 0.1: 0.9 * 1 + 0.1 * 2
    assert float(auxiliary_weighted_loss(emotion, {"asr": asr}, 0.1)) == pytest.approx(
        1.1
    )
    # eqn 5, beta = 0.1: 0.8 * 1 + 0.1 * 3 + 0.1 * 5
    stage2 = auxiliary_weighted_loss(emotion, {"gender": gender, "style": style}, 0.1)
    assert float(stage2) == pytest.approx(1.6)
    # eqn 3, alpha = 0.1: 0.7 * 1 + 0.1 * (2 + 3 + 5)
    everything = {"asr": asr, "gender": gender, "style": style}
    assert float(auxiliary_weighted_loss(emotion, everything, 0.1)) == pytest.approx(
        1.7
    )
    assert float(auxiliary_weighted_loss(emotion, {}, 0.1)) == 1.0
    with pytest.raises(ValueError, match="negative weight"):
        auxiliary_weighted_loss(emotion, everything, 0.4)


def test_fused_loss_and_probabilities():
    logits = torch.tensor([[[2.0, 0.0]], [[0.0, 1.0]]])  # two views, one utterance
    target = torch.tensor([0])
    ce = [math.log(1 + math.exp(-2.0)), math.log(1 + math.exp(1.0))]
    assert float(fused_cross_entropy(logits, target)) == pytest.approx(sum(ce) / 2)
    p0 = [1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(1.0))]
    assert fused_probabilities(logits)[0, 0].item() == pytest.approx(sum(p0) / 2)


def _head(fusion, adapters=False):
    torch.manual_seed(0)
    tasks = ["emotion", "gender", "style"]
    return MultiTaskHead(
        branches={
            task: TaskBranch(6, 4, BottleneckAdapter(6, 3) if adapters else None)
            for task in tasks
        },
        classifiers={"gender": nn.Linear(4, 2), "style": nn.Linear(4, 2)},
        fusion=fusion,
    )


def test_fusion_settings():
    frames, lengths = torch.randn(3, 7, 6), torch.tensor([1.0, 5 / 7, 2 / 7])
    out = _head(NoFusion(4, 4)).eval()(frames, lengths)
    assert out.emotion_logits.shape == (1, 3, 4)
    head = _head(ConcatFusion(4, 4))
    out = head(frames, lengths)
    joint = torch.cat([out.embeddings[t] for t in ("emotion", "gender", "style")], -1)
    torch.testing.assert_close(out.emotion_logits[0], head.fusion.classifier(joint))
    head = _head(SharedFusion(4, 4), adapters=True)
    out = head(frames, lengths)
    assert out.emotion_logits.shape == (3, 3, 4)
    torch.testing.assert_close(
        out.emotion_logits[2], head.fusion.classifier(out.embeddings["style"])
    )
    assert out.logits["gender"].shape == (3, 2) and out.logits["style"].shape == (3, 2)
    with pytest.raises(ValueError, match="have no branch"):
        MultiTaskHead(
            {"emotion": TaskBranch(6, 4)}, {"gender": nn.Linear(4, 2)}, NoFusion(4, 4)
        )


def test_branch_ignores_padding():
    branch = TaskBranch(6, 4, BottleneckAdapter(6, 3))
    nn.init.normal_(branch.adapter.up_proj.weight)
    frames = torch.randn(1, 5, 6)
    padded = torch.cat([frames, 100 * torch.randn(1, 3, 6)], dim=1)
    torch.testing.assert_close(
        branch(padded, torch.tensor([5 / 8])), branch(frames, torch.ones(1))
    )
