"""Training objectives of the adapter (eqns 1 and 6 of the paper).

Authors
 * ser_lib contributors
"""

import torch
import torch.nn.functional as F

from ser_lib.models.local_attributes import prototype_logits


def _check_frame_mask(mask, shape, caller):
    """Raises if the mask is not a bool [B, T] tensor matching shape[:2]."""
    if mask.dtype != torch.bool or tuple(mask.shape) != tuple(shape[:2]):
        raise ValueError(
            f"{caller}: mask must be a bool tensor of shape {tuple(shape[:2])}, got "
            f"{mask.dtype} {tuple(mask.shape)}"
        )


def reconstruction_loss(z_teacher, z_student, mask):
    """Masked reconstruction loss (eqn 1).

    ``L_rec = 1/|M| sum_{i in M} ||z_i^t - z_i^s||^2``: squared error summed
    over dimensions, averaged over the masked frames. The teacher output is a
    target (detached). With no masked frame the loss is 0 (still attached to
    the student's graph).

    Arguments
    ---------
    z_teacher : torch.Tensor
        Teacher frames [B, T, D].
    z_student : torch.Tensor
        Student frames [B, T, D].
    mask : torch.Tensor
        Bool [B, T], True on masked frames (M).

    Returns
    -------
    torch.Tensor
        Scalar loss.

    Example
    -------
    >>> zt, zs = torch.zeros(1, 3, 2), torch.ones(1, 3, 2)
    >>> reconstruction_loss(zt, zs, torch.tensor([[True, False, True]]))
    tensor(2.)
    """
    if z_teacher.shape != z_student.shape:
        raise ValueError(
            f"reconstruction_loss: teacher {tuple(z_teacher.shape)} and student "
            f"{tuple(z_student.shape)} shapes differ"
        )
    _check_frame_mask(mask, z_student.shape, "reconstruction_loss")
    mask = mask.to(z_student.device)
    if not bool(mask.any()):
        return z_student.sum() * 0.0
    # float32 island: the squared error of bf16/fp16 frames is summed in float32
    with torch.autocast(device_type=z_student.device.type, enabled=False):
        error = (z_teacher.detach()[mask].float() - z_student[mask].float()) ** 2
        return error.sum(dim=-1).mean()  # error: [|M|, D]


def pseudo_ce_loss(z_student, prototypes, targets, mask, tau=0.1, logits="cosine"):
    """Frame-level self-distillation loss on masked frames (L_pce of eqn 6).

    Student logits are cosine similarities to the (detached) prototypes divided
    by ``tau`` (``logits="cosine"``) or negative squared distances over ``tau``
    (``"neg_sqdist"``, see :func:`ser_lib.models.local_attributes.prototype_logits`);
    the targets are the teacher frames' prototype indices (eqn 4);
    cross-entropy is averaged over the masked frames, in float32. With no masked
    frame the loss is 0 (still attached to the student's graph).

    Arguments
    ---------
    z_student : torch.Tensor
        Student frames [B, T, D].
    prototypes : torch.Tensor
        Local attributes [K, D].
    targets : torch.Tensor
        Long [B, T], prototype index of every teacher frame (only masked
        frames are read).
    mask : torch.Tensor
        Bool [B, T], True on masked frames.
    tau : float
        Temperature.
    logits : str
        ``"cosine"`` or ``"neg_sqdist"`` (the ``pce_logits`` setting).

    Returns
    -------
    torch.Tensor
        Scalar loss.

    Example
    -------
    >>> zs = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    >>> protos = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> loss = pseudo_ce_loss(zs, protos, torch.tensor([[0, 1]]),
    ...                       torch.tensor([[True, True]]), tau=0.1)
    >>> round(float(loss), 6)
    4.5e-05
    """
    _check_frame_mask(mask, z_student.shape, "pseudo_ce_loss")
    if targets.shape != mask.shape:
        raise ValueError(
            f"pseudo_ce_loss: targets {tuple(targets.shape)} and mask "
            f"{tuple(mask.shape)} shapes differ"
        )
    mask = mask.to(z_student.device)
    if not bool(mask.any()):
        return z_student.sum() * 0.0
    scores = prototype_logits(z_student[mask], prototypes, tau, logits)  # [|M|, K]
    with torch.autocast(device_type=z_student.device.type, enabled=False):
        return F.cross_entropy(scores, targets.to(z_student.device)[mask].long())


def combined_loss(l_rec, l_pce, lam):
    """Total adapter loss ``L = lam * L_rec + (1 - lam) * L_pce`` (eqn 6).

    Arguments
    ---------
    l_rec : torch.Tensor
        Reconstruction loss.
    l_pce : torch.Tensor
        Pseudo cross-entropy loss.
    lam : float
        Weight in [0, 1].

    Returns
    -------
    torch.Tensor
        Scalar loss.

    Example
    -------
    >>> combined_loss(torch.tensor(2.0), torch.tensor(4.0), 0.75)
    tensor(2.5000)
    """
    if not 0.0 <= float(lam) <= 1.0:
        raise ValueError(f"combined_loss: lam must be in [0, 1], got {lam}")
    return lam * l_rec + (1.0 - lam) * l_pce
