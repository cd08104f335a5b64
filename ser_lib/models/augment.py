"""Minority-class augmentation for fine-tuning (section III-B of the paper).

Minority classes are oversampled toward the majority count; every extra copy
gets a random fraction of its valid frames replaced by the WAP-Transformer's
learned mask embedding, through the ``frame_mask`` argument of
:class:`ser_lib.models.wap_transformer.WAPTransformer`.

Authors
 * ser_lib contributors
"""

import numpy as np
import torch

from ser_lib.models.masking import random_frame_mask


def augmentation_mask(lengths, max_len, is_augmented, fraction, generator=None, span=1):
    """Frame mask that masks a random fraction of valid frames of augmented rows only.

    Arguments
    ---------
    lengths : torch.Tensor
        Relative lengths [B].
    max_len : int
        Padded number of frames T.
    is_augmented : torch.Tensor
        Bool [B], True for rows that are augmented copies.
    fraction : float
        Fraction of valid frames to mask in augmented rows, in [0, 1].
    generator : torch.Generator, optional
        Random generator (see :func:`ser_lib.models.masking.random_frame_mask`).
    span : int
        Span length of the masked frames.

    Returns
    -------
    torch.Tensor
        Bool [B, T], True on frames to replace by the mask embedding; all False
        on rows that are not augmented.

    Example
    -------
    >>> g = torch.Generator().manual_seed(0)
    >>> mask = augmentation_mask(torch.tensor([1.0, 1.0]), 10,
    ...                          torch.tensor([True, False]), 0.3, generator=g)
    >>> mask.shape, mask.sum(dim=1).tolist()
    (torch.Size([2, 10]), [3, 0])
    """
    is_augmented = is_augmented.to(device=lengths.device, dtype=torch.bool)
    if is_augmented.shape != lengths.shape:
        raise ValueError(
            f"augmentation_mask: is_augmented has shape {tuple(is_augmented.shape)}, "
            f"lengths has shape {tuple(lengths.shape)}"
        )
    mask = torch.zeros(
        lengths.shape[0], max_len, dtype=torch.bool, device=lengths.device
    )
    if bool(is_augmented.any()):
        mask[is_augmented] = random_frame_mask(
            lengths[is_augmented], max_len, fraction, span=span, generator=generator
        )
    return mask


def oversample_minority(labels, ratio=1.0, seed=0):
    """Indices of an oversampled data set: originals plus copies of minority items.

    Every class with fewer than ``round(ratio * majority_count)`` items gets
    extra copies up to that count. Copies cycle through the class's items in a
    random order, so every item is copied ``floor(extra / count)`` or one more
    times. Deterministic for a given seed.

    Arguments
    ---------
    labels : list
        Class label (str or int) of every item.
    ratio : float
        Target count per class relative to the majority count (>= 0; 0 or any
        ratio that targets fewer items than a class has adds nothing for it).
    seed : int
        Seed of the numpy generator that orders the copies.

    Returns
    -------
    list of tuple
        ``(index, is_copy)``: first every original ``(i, False)`` in order, then
        the copies ``(i, True)`` grouped by class in order of first appearance.

    Example
    -------
    >>> items = oversample_minority(["a", "a", "a", "a", "b", "c", "c"], seed=0)
    >>> len(items), sum(is_copy for _, is_copy in items)
    (12, 5)
    >>> sorted(i for i, is_copy in items if is_copy)
    [4, 4, 4, 5, 6]
    """
    if ratio < 0:
        raise ValueError(f"oversample_minority: ratio must be >= 0, got {ratio}")
    items = [(index, False) for index in range(len(labels))]
    if not labels:
        return items
    by_class = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    target = int(round(ratio * max(len(members) for members in by_class.values())))
    rng = np.random.default_rng(seed)
    for members in by_class.values():
        extra = target - len(members)
        if extra <= 0:
            continue
        full_rounds, remainder = divmod(extra, len(members))
        copies = []
        for _ in range(full_rounds):
            copies.extend(rng.permutation(members).tolist())
        copies.extend(rng.permutation(members)[:remainder].tolist())
        items.extend((int(index), True) for index in copies)
    return items
