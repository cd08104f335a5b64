"""Multi-task objectives of two-stage adapter fine-tuning (Gao et al., ICASSP 2024).

* :func:`auxiliary_weighted_loss`: ``L = (1 - k w) L_main + w sum_aux L_aux``, the
  pattern of the paper's eqns 3 (``1 - 3 alpha``), 4 (``1 - lambda``) and 5
  (``1 - 2 beta``) with k the number of auxiliary tasks present;
* :func:`fused_cross_entropy` and :func:`fused_probabilities`: emotion loss and
  prediction over the views of a fusion (``[V, B, C]`` logits, see
  :mod:`ser_lib.models.task_heads`): mean of the views' cross-entropies, mean of their
  softmaxes;
* the self-contrastive losses over the pairs of task embeddings of one utterance
  (batch mean):

  - :func:`scl_norm` (eqn 6). The paper prints ``-||x^e - x^g|| - ...``; minimising
    that pushes the embeddings apart, against the stated aim ("SCL reduces
    intra-class feature distances"). ``sign="intended"`` (default) adds the
    Euclidean distances; ``sign="paper"`` subtracts them as printed;
  - :func:`scl_cos` (eqn 7). The paper prints ``-cos(x^e - x^g) - ...``, a cosine of
    one vector, read as a typo for the cosine similarity ``cos(x^e, x^g)``
    (``form="intended"``, default, range [-P, P] for P pairs). ``form="paper"`` keeps
    the printed form literally: the element-wise cosine of the difference, averaged
    over the dimensions.

Authors
 * ser_lib contributors
"""

from itertools import combinations

import torch
import torch.nn.functional as F

SCL_NORM_SIGNS = {"intended": 1.0, "paper": -1.0}
"""Sign of the summed distances in :func:`scl_norm`."""

SCL_COS_FORMS = ("intended", "paper")
"""Readings of eqn 7 in :func:`scl_cos`."""


def auxiliary_weighted_loss(main_loss, auxiliary_losses, weight):
    """``(1 - k w) L_main + w sum_k L_aux_k`` (eqns 3-5).

    Arguments
    ---------
    main_loss : torch.Tensor
        Scalar emotion loss.
    auxiliary_losses : dict
        Task -> scalar loss (may be empty: then the result is ``main_loss``).
    weight : float
        Weight w of every auxiliary task (alpha, lambda or beta; 0.1 in the paper).

    Returns
    -------
    torch.Tensor
        Scalar loss.

    Raises
    ------
    ValueError
        If the main task's weight ``1 - k w`` is negative.

    Example
    -------
    >>> auxiliary_weighted_loss(torch.tensor(1.0), {"gender": torch.tensor(2.0),
    ...                                             "style": torch.tensor(4.0)}, 0.1)
    tensor(1.4000)
    """
    main_weight = 1.0 - weight * len(auxiliary_losses)
    if main_weight < 0.0:
        raise ValueError(
            f"Auxiliary weight {weight} with {len(auxiliary_losses)} tasks leaves the "
            f"main task a negative weight {main_weight}"
        )
    total = main_weight * main_loss
    for loss in auxiliary_losses.values():
        total = total + weight * loss
    return total


def fused_cross_entropy(view_logits, targets):
    """Mean over the views of the cross-entropy of each view's logits.

    Arguments
    ---------
    view_logits : torch.Tensor
        [V, B, C].
    targets : torch.Tensor
        Class indices [B].

    Returns
    -------
    torch.Tensor
        Scalar loss.

    Example
    -------
    >>> logits = torch.zeros(2, 1, 4)
    >>> round(float(fused_cross_entropy(logits, torch.tensor([0]))), 4)  # log 4
    1.3863
    """
    losses = [F.cross_entropy(logits.float(), targets) for logits in view_logits]
    return torch.stack(losses).mean()


def fused_probabilities(view_logits):
    """Mean over the views of the softmax of each view's logits.

    Arguments
    ---------
    view_logits : torch.Tensor
        [V, B, C].

    Returns
    -------
    torch.Tensor
        [B, C] class probabilities.

    Example
    -------
    >>> fused_probabilities(torch.tensor([[[0.0, 0.0]], [[0.0, 100.0]]]))
    tensor([[0.2500, 0.7500]])
    """
    return torch.softmax(view_logits.float(), dim=-1).mean(dim=0)


def _pairs(embeddings):
    if len(embeddings) < 2:
        raise ValueError(
            f"A self-contrastive loss needs 2+ embeddings, got {len(embeddings)}"
        )
    return list(combinations(embeddings, 2))


def scl_norm(embeddings, sign="intended"):
    """Self-contrastive loss on Euclidean distances (eqn 6), batch mean.

    ``sign * sum_{pairs (a, b)} ||a - b||_2``, averaged over the batch.

    Arguments
    ---------
    embeddings : list of torch.Tensor
        Task embeddings of the same utterances, each [B, e] (``[x^e, x^g, x^s]``).
    sign : str
        ``"intended"`` (+1: pulls the embeddings together) or ``"paper"`` (-1, as
        printed).

    Returns
    -------
    torch.Tensor
        Scalar loss.

    Example
    -------
    >>> x_e, x_g, x_s = torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0]]), torch.tensor([[0.0, 4.0]])
    >>> scl_norm([x_e, x_g, x_s])  # 5 + 4 + 3
    tensor(12.)
    >>> scl_norm([x_e, x_g, x_s], sign="paper")
    tensor(-12.)
    """
    if sign not in SCL_NORM_SIGNS:
        raise ValueError(f"sign must be one of {list(SCL_NORM_SIGNS)}, got {sign!r}")
    distances = [(a.float() - b.float()).norm(dim=-1) for a, b in _pairs(embeddings)]
    return SCL_NORM_SIGNS[sign] * torch.stack(distances).sum(dim=0).mean()


def scl_cos(embeddings, form="intended"):
    """Self-contrastive loss on cosines (eqn 7), batch mean.

    ``form="intended"``: ``-sum_{pairs (a, b)} cos(a, b)`` (cosine similarity).
    ``form="paper"``: ``-sum_{pairs} mean_d cos(a_d - b_d)`` (the printed formula,
    element-wise).

    Arguments
    ---------
    embeddings : list of torch.Tensor
        Task embeddings of the same utterances, each [B, e].
    form : str
        ``"intended"`` or ``"paper"``.

    Returns
    -------
    torch.Tensor
        Scalar loss.

    Example
    -------
    >>> x_e, x_g, x_s = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]]), torch.tensor([[0.0, 2.0]])
    >>> round(float(scl_cos([x_e, x_g, x_s])), 4)  # -(0.7071 + 0 + 0.7071)
    -1.4142
    """
    if form not in SCL_COS_FORMS:
        raise ValueError(f"form must be one of {SCL_COS_FORMS}, got {form!r}")
    if form == "intended":
        terms = [
            F.cosine_similarity(a.float(), b.float(), dim=-1)
            for a, b in _pairs(embeddings)
        ]
    else:
        terms = [
            torch.cos(a.float() - b.float()).mean(dim=-1) for a, b in _pairs(embeddings)
        ]
    return -torch.stack(terms).sum(dim=0).mean()
