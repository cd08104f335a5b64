"""Relative-length helpers and random frame masking.

Every module of the library that needs to know which frames of a padded batch are
real goes through :func:`valid_frames` (number of valid frames per row) or
:func:`valid_mask` (the boolean ``[B, T]`` mask built from it with SpeechBrain's
``length_to_mask``), so that relative lengths are turned into frame counts in one
place and in one way (``round(length * T)``).

Authors
 * ser_lib contributors
"""

import torch
from speechbrain.dataio.dataio import length_to_mask

# Relative lengths computed as ``n / max_n`` in float arithmetic may exceed 1.0 by
# a rounding error; anything beyond this is a caller bug and raises.
_RELATIVE_LENGTH_TOLERANCE = 1e-6


def valid_frames(lengths, max_len):
    """Returns the number of valid (non-padded) frames of every row.

    Arguments
    ---------
    lengths : torch.Tensor
        Relative lengths in [0, 1], shape [B] (SpeechBrain convention: 1.0 is the
        longest utterance of the batch).
    max_len : int
        Padded number of frames T of the batch.

    Returns
    -------
    torch.Tensor
        Long tensor [B] with ``round(lengths * max_len)``, clamped to
        ``[0, max_len]``.

    Raises
    ------
    ValueError
        If ``lengths`` is not 1-D or holds values outside [0, 1].

    Example
    -------
    >>> valid_frames(torch.tensor([1.0, 0.5, 0.26]), 10)
    tensor([10,  5,  3])
    """
    if lengths.dim() != 1:
        raise ValueError(
            f"valid_frames: lengths must have shape [B], got {tuple(lengths.shape)}"
        )
    if lengths.numel() > 0:
        low, high = float(lengths.min()), float(lengths.max())
        if low < 0.0 or high > 1.0 + _RELATIVE_LENGTH_TOLERANCE:
            raise ValueError(
                "valid_frames: relative lengths must lie in [0, 1], got values in "
                f"[{low}, {high}]"
            )
    frames = torch.round(lengths.double() * max_len).long()
    return frames.clamp(0, max_len)


def valid_mask(lengths, max_len, batch_size=None, device=None):
    """Returns the boolean mask of valid frames, True on real frames.

    Arguments
    ---------
    lengths : torch.Tensor or None
        Relative lengths [B] in [0, 1]. ``None`` means every frame is valid.
    max_len : int
        Padded number of frames T.
    batch_size : int, optional
        Batch size, needed only when ``lengths`` is None.
    device : torch.device, optional
        Device of the mask when ``lengths`` is None (default: CPU).

    Returns
    -------
    torch.Tensor
        Bool tensor [B, T].

    Example
    -------
    >>> valid_mask(torch.tensor([1.0, 0.5]), 4)
    tensor([[ True,  True,  True,  True],
            [ True,  True, False, False]])
    >>> valid_mask(None, 3, batch_size=2).shape
    torch.Size([2, 3])
    """
    if lengths is None:
        if batch_size is None:
            raise ValueError("valid_mask: batch_size is required when lengths is None")
        return torch.ones(batch_size, max_len, dtype=torch.bool, device=device)
    frames = valid_frames(lengths, max_len)
    return length_to_mask(
        frames, max_len=max_len, dtype=torch.bool, device=frames.device
    )


def num_masked_frames(n_valid, ratio):
    """Returns how many frames of each row are masked for a given ratio.

    ``round(ratio * n_valid)``, at least 1 when ``ratio > 0`` and the row has a
    valid frame, never more than ``n_valid``.

    Arguments
    ---------
    n_valid : torch.Tensor
        Long tensor [B] of valid frame counts (see :func:`valid_frames`).
    ratio : float
        Fraction of the valid frames to mask, in [0, 1].

    Returns
    -------
    torch.Tensor
        Long tensor [B].

    Example
    -------
    >>> num_masked_frames(torch.tensor([10, 3, 1, 0]), 0.4)
    tensor([4, 1, 1, 0])
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"num_masked_frames: ratio must be in [0, 1], got {ratio}")
    counts = torch.round(n_valid.double() * ratio).long()
    if ratio > 0:
        counts = torch.maximum(counts, (n_valid > 0).long())
    return torch.minimum(counts, n_valid)


def random_frame_mask(lengths, max_len, ratio, span=1, generator=None):
    """Chooses exactly ``round(ratio * n_valid)`` valid frames per row at random.

    Padded frames are never chosen. With ``span == 1`` the frames are drawn
    uniformly without replacement. With ``span > 1`` the valid frames of a row
    are cut into consecutive blocks of ``span`` frames on a grid with a random
    offset (so the first and last block may be shorter); whole blocks are taken
    in random order until the count is reached, and only the first frames of the
    last block taken are kept. The count is therefore exact and the masked
    frames form contiguous spans of ``span`` frames (adjacent spans merge; one
    span per row may be shorter).

    Arguments
    ---------
    lengths : torch.Tensor or None
        Relative lengths [B] in [0, 1]. ``None`` is not accepted here: pass
        ``torch.ones(B)`` for fully valid rows.
    max_len : int
        Padded number of frames T.
    ratio : float
        Fraction of the valid frames to mask, in [0, 1].
    span : int
        Span length in frames (>= 1).
    generator : torch.Generator, optional
        Random generator; the random draws happen on its device (CPU when
        omitted, using torch's default generator). The mask is returned on the
        device of ``lengths``.

    Returns
    -------
    torch.Tensor
        Bool tensor [B, T], True on masked frames.

    Example
    -------
    >>> g = torch.Generator().manual_seed(0)
    >>> mask = random_frame_mask(torch.tensor([1.0, 0.5]), 10, 0.4, generator=g)
    >>> mask.shape, mask.sum(dim=1).tolist(), bool(mask[1, 5:].any())
    (torch.Size([2, 10]), [4, 2], False)
    >>> mask = random_frame_mask(torch.tensor([1.0]), 20, 0.5, span=3, generator=g)
    >>> int(mask.sum())
    10
    """
    if lengths is None:
        raise ValueError(
            "random_frame_mask: lengths is required (use torch.ones(B) for full rows)"
        )
    if span < 1:
        raise ValueError(f"random_frame_mask: span must be >= 1, got {span}")
    n_valid = valid_frames(lengths, max_len)
    n_mask = num_masked_frames(n_valid, ratio)
    rng_device = generator.device if generator is not None else torch.device("cpu")
    n_valid_r = n_valid.to(rng_device)
    n_mask_r = n_mask.to(rng_device)
    batch = n_valid.shape[0]
    positions = torch.arange(max_len, device=rng_device)
    valid = positions.unsqueeze(0) < n_valid_r.unsqueeze(1)  # [B, T]

    if span == 1:
        scores = torch.rand(batch, max_len, generator=generator, device=rng_device)
        scores = scores.masked_fill(~valid, 2.0)  # padded frames sort last
        order = scores.argsort(dim=1)
        ranks = order.argsort(dim=1)  # rank of every frame in the random order
        mask = (ranks < n_mask_r.unsqueeze(1)) & valid
        return mask.to(lengths.device)

    mask = torch.zeros(batch, max_len, dtype=torch.bool, device=rng_device)
    for row in range(batch):
        n, m = int(n_valid_r[row]), int(n_mask_r[row])
        if m == 0:
            continue
        offset = int(torch.randint(span, (1,), generator=generator, device=rng_device))
        frames = positions[:n]
        block_of_frame = (frames + offset) // span  # [n]
        num_blocks = int(block_of_frame[-1]) + 1
        block_rank = torch.randperm(num_blocks, generator=generator, device=rng_device)
        # Sort frames by (random rank of their block, position): whole blocks in
        # random order, frames of a block in temporal order.
        key = block_rank[block_of_frame] * max_len + frames
        chosen = frames[key.argsort()[:m]]
        mask[row, chosen] = True
    return mask.to(lengths.device)
