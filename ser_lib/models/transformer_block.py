"""The pre-LN transformer block of the WAP-Transformer and its frame gathering.

:class:`TransformerBlock` can compute its outputs for a subset of the frames only
(``query_index``, see :func:`frame_index` and :func:`gather_frames`): the keys and
values see every valid frame, the queries, the residual and the MLP only the chosen
ones (:class:`ser_lib.models.wap_transformer.WAPTransformer` uses it for the
``output_mask`` of its last block).

Authors
 * ser_lib contributors
"""

import torch
import torch.nn.functional as F
from torch import nn


def frame_index(mask):
    """Positions of the True frames of every row, left-aligned and padded.

    Arguments
    ---------
    mask : torch.Tensor
        Bool [B, T].

    Returns
    -------
    index : torch.Tensor
        Long [B, M] with ``M = max(1, most True frames in a row)``: the positions
        of each row's True frames in increasing order, then zeros.
    present : torch.Tensor
        Bool [B, M], True where ``index`` holds a real position.

    Example
    -------
    >>> mask = torch.tensor([[False, True, True], [True, False, False]])
    >>> index, present = frame_index(mask)
    >>> index.tolist(), present.tolist()
    ([[1, 2], [0, 0]], [[True, True], [True, False]])
    """
    counts = mask.sum(dim=1)  # [B]
    width = max(int(counts.max()) if counts.numel() else 0, 1)
    # A stable sort of "not selected" puts the selected positions first, in order.
    order = torch.argsort((~mask).to(torch.uint8), dim=1, stable=True)[:, :width]
    present = torch.arange(width, device=mask.device) < counts.unsqueeze(1)
    return order * present, present


def gather_frames(x, index):
    """Frames ``x[b, index[b, m]]`` of every row: [B, T, C] -> [B, M, C].

    Example
    -------
    >>> x = torch.arange(6.0).view(1, 3, 2)
    >>> gather_frames(x, torch.tensor([[2, 0]])).tolist()
    [[[4.0, 5.0], [0.0, 1.0]]]
    """
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class TransformerBlock(nn.Module):
    """Pre-LN transformer block with a key-padding mask.

    ``x = x + MHSA(LN(x)); x = x + MLP(LN(x))`` with a GELU MLP of width
    ``mlp_ratio * d_model``. Attention uses
    ``torch.nn.functional.scaled_dot_product_attention``; padded keys are
    excluded from every query's softmax.

    Arguments
    ---------
    d_model : int
        Model width.
    nhead : int
        Number of attention heads (must divide ``d_model``).
    mlp_ratio : int
        Hidden width of the MLP relative to ``d_model``.
    dropout : float
        Dropout on attention weights and after the attention / MLP projections.
    layer_norm_eps : float
        Epsilon of the layer norms.

    Example
    -------
    >>> block = TransformerBlock(d_model=16, nhead=4)
    >>> x = torch.randn(2, 5, 16)
    >>> key_mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    >>> block(x, key_mask).shape
    torch.Size([2, 5, 16])
    """

    def __init__(self, d_model, nhead, mlp_ratio=4, dropout=0.0, layer_norm_eps=1e-5):
        super().__init__()
        if d_model % nhead != 0:
            raise ValueError(
                f"TransformerBlock: d_model={d_model} is not divisible by nhead={nhead}"
            )
        self.nhead = nhead
        self.dropout = dropout
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.proj_drop = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        hidden = int(mlp_ratio * d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, d_model),
            nn.Dropout(dropout),
        )

    def attention(self, x, key_mask=None, query_index=None):
        """Multi-head self-attention of an already normalised input.

        Arguments
        ---------
        x : torch.Tensor
            Input [B, T, d_model].
        key_mask : torch.Tensor, optional
            Bool [B, T], True for keys that take part (valid frames).
        query_index : torch.Tensor, optional
            Long [B, M]: only these frames are queries (see :meth:`forward`).

        Returns
        -------
        torch.Tensor
            Attention output after the output projection, [B, T, d_model]
            ([B, M, d_model] with ``query_index``).

        Example
        -------
        >>> block = TransformerBlock(d_model=8, nhead=2)
        >>> block.attention(torch.randn(1, 3, 8)).shape
        torch.Size([1, 3, 8])
        """
        batch, time, width = x.shape
        head_dim = width // self.nhead
        if query_index is None:
            qkv = self.qkv(x).view(batch, time, 3, self.nhead, head_dim)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, H, T, head_dim]
        else:
            # Keys and values of every frame, queries of the selected ones only.
            w_q, w_kv = self.qkv.weight.split([width, 2 * width])
            b_q, b_kv = self.qkv.bias.split([width, 2 * width])
            kv = F.linear(x, w_kv, b_kv).view(batch, time, 2, self.nhead, head_dim)
            k, v = kv.permute(2, 0, 3, 1, 4)  # each [B, H, T, head_dim]
            q = F.linear(gather_frames(x, query_index), w_q, b_q)
            q = q.view(batch, -1, self.nhead, head_dim).transpose(1, 2)  # [B, H, M, hd]
        attn_mask = None
        if key_mask is not None:
            attn_mask = key_mask[:, None, None, :]  # [B, 1, 1, T], True = attend
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
        )
        out = out.transpose(1, 2).reshape(batch, q.shape[2], width)
        return self.proj_drop(self.proj(out))

    def forward(self, x, key_mask=None, query_index=None):
        """Applies the block.

        Arguments
        ---------
        x : torch.Tensor
            Input [B, T, d_model].
        key_mask : torch.Tensor, optional
            Bool [B, T], True for valid frames. Every row needs at least one
            True entry (rows without valid keys give NaN).
        query_index : torch.Tensor, optional
            Long [B, M] frame positions (:func:`frame_index`): only the outputs
            of these frames are computed (every frame is still a key), which
            saves the query, projection and MLP work of the others.

        Returns
        -------
        torch.Tensor
            Output [B, T, d_model], or [B, M, d_model] with ``query_index``
            (equal to the full output at those frames).

        Example
        -------
        >>> block = TransformerBlock(d_model=8, nhead=2).eval()
        >>> x = torch.randn(1, 4, 8)
        >>> part = block(x, query_index=torch.tensor([[3, 1]]))
        >>> torch.allclose(part, block(x)[:, [3, 1]], atol=1e-6)
        True
        """
        if query_index is None:
            x = x + self.attention(self.norm1(x), key_mask)
        else:
            x = gather_frames(x, query_index) + self.attention(
                self.norm1(x), key_mask, query_index
            )
        return x + self.mlp(self.norm2(x))
