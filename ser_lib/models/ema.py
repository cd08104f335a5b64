"""Exponential-moving-average teacher updates (eqn 2 of the paper).

Authors
 * ser_lib contributors
"""

import torch


def _paired(teacher_items, student_items, kind):
    """Pairs named tensors of two modules, checking names and shapes match."""
    teacher_items = dict(teacher_items)
    student_items = dict(student_items)
    if teacher_items.keys() != student_items.keys():
        missing = sorted(set(student_items) ^ set(teacher_items))
        raise ValueError(
            f"EMA: teacher and student {kind} differ in names: {missing[:5]}"
        )
    pairs = []
    for name, tensor_t in teacher_items.items():
        tensor_s = student_items[name]
        if tensor_t.shape != tensor_s.shape:
            raise ValueError(
                f"EMA: {kind[:-1]} '{name}' has shape {tuple(tensor_t.shape)} in the "
                f"teacher and {tuple(tensor_s.shape)} in the student"
            )
        pairs.append((tensor_t, tensor_s))
    return pairs


@torch.no_grad()
def ema_update_(teacher, student, alpha):
    """Moves the teacher towards the student, in place (eqn 2).

    Parameters: ``theta_t <- alpha * theta_t + (1 - alpha) * theta_s``.
    Buffers (e.g. running statistics) are copied from the student.

    Arguments
    ---------
    teacher : torch.nn.Module
        Module updated in place.
    student : torch.nn.Module
        Module with the same parameter and buffer names and shapes.
    alpha : float
        Smoothing factor in [0, 1] (0.999 in the paper).

    Example
    -------
    >>> teacher, student = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    >>> _ = torch.nn.init.zeros_(teacher.weight)
    >>> _ = torch.nn.init.ones_(student.weight)
    >>> ema_update_(teacher, student, alpha=0.9)
    >>> teacher.weight
    Parameter containing:
    tensor([[0.1000, 0.1000]], requires_grad=True)
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"ema_update_: alpha must be in [0, 1], got {alpha}")
    for param_t, param_s in _paired(
        teacher.named_parameters(), student.named_parameters(), "parameters"
    ):
        param_t.mul_(alpha).add_(param_s.detach().to(param_t.dtype), alpha=1.0 - alpha)
    for buffer_t, buffer_s in _paired(
        teacher.named_buffers(), student.named_buffers(), "buffers"
    ):
        buffer_t.copy_(buffer_s)


@torch.no_grad()
def copy_weights_(teacher, student):
    """Copies every parameter and buffer of the student into the teacher, in place.

    Arguments
    ---------
    teacher : torch.nn.Module
        Module overwritten.
    student : torch.nn.Module
        Module with the same parameter and buffer names and shapes.

    Example
    -------
    >>> teacher, student = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    >>> copy_weights_(teacher, student)
    >>> bool(torch.equal(teacher.weight, student.weight))
    True
    """
    for param_t, param_s in _paired(
        teacher.named_parameters(), student.named_parameters(), "parameters"
    ):
        param_t.copy_(param_s)
    for buffer_t, buffer_s in _paired(
        teacher.named_buffers(), student.named_buffers(), "buffers"
    ):
        buffer_t.copy_(buffer_s)
