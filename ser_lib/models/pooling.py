"""Utterance-level pooling: statistical attentive pooling (eqn 7) and mean pooling.

Authors
 * ser_lib contributors
"""

import torch
import torch.nn.functional as F
from torch import nn

from ser_lib.models.masking import valid_mask


def mean_pool(x, lengths=None):
    """Mean over the valid frames of every row.

    Arguments
    ---------
    x : torch.Tensor
        Frames [B, T, D].
    lengths : torch.Tensor, optional
        Relative lengths [B]; None means every frame is valid.

    Returns
    -------
    torch.Tensor
        [B, D]. Rows without valid frames give zeros.

    Example
    -------
    >>> x = torch.tensor([[[1.0], [3.0], [100.0]]])
    >>> mean_pool(x, torch.tensor([2 / 3]))
    tensor([[2.]])
    """
    batch, time, _ = x.shape
    mask = valid_mask(lengths, time, batch_size=batch, device=x.device)
    mask = mask.to(x.device).unsqueeze(-1)  # [B, T, 1]
    total = torch.where(mask, x, torch.zeros_like(x)).sum(dim=1)
    return total / mask.sum(dim=1).clamp_min(1).to(x.dtype)


class StatisticalAttentivePooling(nn.Module):
    """Statistical attentive pooling (SAP, eqn 7).

    A 1x1 convolution gives H attention logits per frame; a softmax over the
    valid frames gives ``A in R^{T x H}``; per head the weighted mean
    ``mu = Z^T A`` and weighted variance ``sigma^2 = (Z * Z)^T A - mu * mu``
    (clamped at ``eps``) are computed. The paper prints ``Z^T (A * A)`` for the
    second-order term, a typo: the weighted variance needs the weighted mean of
    ``Z^2``. ``mu`` and ``sigma^2`` are flattened to ``D * H`` each
    (dimension-major: index ``d * H + h``), L2-normalised separately and
    concatenated.

    Padded frames have no effect on the output (they are zeroed and get zero
    attention).

    Arguments
    ---------
    input_dim : int
        Frame dimension D.
    num_heads : int
        Number of attention heads H.
    eps : float
        Lower bound of the variance.

    Example
    -------
    >>> sap = StatisticalAttentivePooling(input_dim=8, num_heads=4)
    >>> out = sap(torch.randn(2, 5, 8), torch.tensor([1.0, 0.6]))
    >>> out.shape, sap.output_dim
    (torch.Size([2, 64]), 64)
    """

    def __init__(self, input_dim, num_heads=4, eps=1e-6):
        super().__init__()
        self.input_dim = input_dim
        self.num_heads = num_heads
        self.eps = eps
        self.output_dim = 2 * input_dim * num_heads
        self.attention = nn.Conv1d(input_dim, num_heads, kernel_size=1)

    def attention_weights(self, x, lengths=None):
        """Attention map A, softmax over the valid frames of every row.

        Arguments
        ---------
        x : torch.Tensor
            Frames [B, T, D].
        lengths : torch.Tensor, optional
            Relative lengths [B]; None means every frame is valid.

        Returns
        -------
        torch.Tensor
            [B, T, H], zero on padded frames, sums to one over T.

        Example
        -------
        >>> sap = StatisticalAttentivePooling(input_dim=4, num_heads=2)
        >>> a = sap.attention_weights(torch.randn(1, 3, 4), torch.tensor([2 / 3]))
        >>> a.shape, a[0, 2].tolist(), torch.allclose(a.sum(dim=1), torch.ones(1, 2))
        (torch.Size([1, 3, 2]), [0.0, 0.0], True)
        """
        return self._attention(*self._zero_padding(x, lengths))

    def _attention(self, x, mask):
        """Softmax attention over valid frames of zero-padded x [B, T, D]."""
        logits = self.attention(x.transpose(1, 2)).transpose(1, 2)  # [B, T, H]
        logits = logits.masked_fill(~mask.unsqueeze(-1), float("-inf"))
        return torch.softmax(logits, dim=1)

    def _zero_padding(self, x, lengths):
        """Checks the input, zeroes padded frames, returns (x, valid mask [B, T])."""
        if x.dim() != 3 or x.shape[-1] != self.input_dim:
            raise ValueError(
                f"StatisticalAttentivePooling: expected [B, T, {self.input_dim}], "
                f"got {tuple(x.shape)}"
            )
        batch, time, _ = x.shape
        mask = valid_mask(lengths, time, batch_size=batch, device=x.device).to(x.device)
        empty = (~mask.any(dim=1)).nonzero(as_tuple=True)[0]
        if empty.numel() > 0:
            raise ValueError(
                "StatisticalAttentivePooling: rows without any valid frame: "
                f"{empty.tolist()}"
            )
        x = torch.where(mask.unsqueeze(-1), x, torch.zeros_like(x))
        return x, mask

    def forward(self, x, lengths=None):
        """Pools frames into an utterance representation.

        Arguments
        ---------
        x : torch.Tensor
            Frames [B, T, D].
        lengths : torch.Tensor, optional
            Relative lengths [B]; None means every frame is valid.

        Returns
        -------
        torch.Tensor
            [B, 2 * D * H]: normalised ``mu`` then normalised ``sigma^2``.
        """
        # float32 island: E[x^2] - mu^2 cancels catastrophically in bf16/fp16
        with torch.autocast(device_type=x.device.type, enabled=False):
            x, mask = self._zero_padding(x.float(), lengths)
            attn = self._attention(x, mask)  # [B, T, H]
            mean = torch.einsum("btd,bth->bdh", x, attn)  # [B, D, H]
            second = torch.einsum("btd,bth->bdh", x * x, attn)
            var = (second - mean * mean).clamp_min(self.eps)
            batch = x.shape[0]
            mean = F.normalize(mean.reshape(batch, -1), dim=-1)
            var = F.normalize(var.reshape(batch, -1), dim=-1)
            return torch.cat([mean, var], dim=-1)
