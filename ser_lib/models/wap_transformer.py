"""WAP-Transformer: the lightweight adapter backbone of the paper.

Patch embedding, learnable 1-D position embedding, L pre-LN transformer blocks,
a softmax-weighted average of the block outputs (``Z = sum_l w_l X^l``) and a
3-layer MLP aggregation block (Song et al., arXiv 2509.23795, section II-A and
Fig. 1b). Frames chosen by a ``frame_mask`` have their patch embedding replaced
by the learnable mask embedding ``e_[M]`` before the position embedding is
added (BEiT style, section II-B1). The block itself is
:class:`ser_lib.models.transformer_block.TransformerBlock` (importable from here).

Authors
 * ser_lib contributors
"""

import torch
import torch.nn.functional as F
from torch import nn

from ser_lib.models.baseline import LayerWeightedSum
from ser_lib.models.masking import valid_frames
from ser_lib.models.transformer_block import (
    TransformerBlock,
    frame_index,
    gather_frames,
)

__all__ = [
    "TransformerBlock",
    "WAPTransformer",
    "aggregation_mlp",
    "frame_index",
    "gather_frames",
]


def aggregation_mlp(dim, num_layers=3, dropout=0.0):
    """Builds the aggregation block: LayerNorm, then ``num_layers`` Linear(dim, dim)
    with GELU between.

    The LayerNorm is the final norm of a pre-LN stack: the block outputs ``X^l`` are
    un-normalised residual streams, so their weighted average ``Z`` is normalised
    before the MLP, as every pre-LN block normalises its input. Without it the
    frame representations (the targets of L_rec and k-means) start orders of
    magnitude below unit scale.

    Arguments
    ---------
    dim : int
        Width of every layer.
    num_layers : int
        Number of linear layers (>= 1).
    dropout : float
        Dropout after every GELU.

    Returns
    -------
    torch.nn.Sequential
        The MLP.

    Example
    -------
    >>> mlp = aggregation_mlp(8, num_layers=3)
    >>> sum(isinstance(m, torch.nn.Linear) for m in mlp), mlp(torch.randn(2, 8)).shape
    (3, torch.Size([2, 8]))
    >>> isinstance(mlp[0], torch.nn.LayerNorm)
    True
    """
    if num_layers < 1:
        raise ValueError(f"aggregation_mlp: num_layers must be >= 1, got {num_layers}")
    layers = [nn.LayerNorm(dim)]
    for i in range(num_layers):
        layers.append(nn.Linear(dim, dim))
        if i < num_layers - 1:
            layers.extend([nn.GELU(), nn.Dropout(dropout)])
    return nn.Sequential(*layers)


class WAPTransformer(nn.Module):
    """Weighted-average-pooling Transformer (the adapter backbone).

    ``X^0 = PatchEmbed(x) (or e_[M] on masked frames) + E_pos``;
    ``X^l = Block_l(X^{l-1})``; ``Z = sum_l softmax(w)_l X^l``; output
    ``MLP(Z)``, zeroed on padded frames.

    When only some frames' outputs are needed (stage 1's student: its losses
    read the masked frames only), ``output_mask`` skips the frame-wise work of
    the others in the last block and the aggregation MLP.

    Padded frames never influence valid ones (key-padding masks, frame-wise
    layers), so an utterance gives the same outputs alone or padded in a batch.
    Sequences longer than ``max_frames`` use the position table linearly
    interpolated to their own number of valid frames (per utterance, which keeps
    the padding invariance); shorter ones use its first rows.

    Arguments
    ---------
    input_dim : int
        Dimension of the encoder features (1024 for HuBERT-large).
    d_model : int
        Model width.
    num_layers : int
        Number of transformer blocks L.
    nhead : int
        Attention heads per block.
    mlp_ratio : int
        MLP width of the blocks relative to ``d_model``.
    max_frames : int
        Rows of the learnable position table.
    dropout : float
        Dropout inside the blocks and the aggregation MLP.
    mlp_layers : int
        Linear layers of the aggregation block.
    init_std : float
        Standard deviation of the truncated-normal initialisation of the
        position table, the mask embedding and all linear weights.
    input_layers : int
        Encoder layers the cached features hold, each of ``input_dim`` channels
        (the flat layout of :class:`ser_lib.models.LayerWeightedSum`: input
        ``[B, T, input_layers * input_dim]``). Above 1, a learnable
        softmax-weighted sum of the layers (``input_mix``) feeds the patch
        embedding, as in the frozen baseline; it is part of the backbone, so the
        EMA teacher, the checkpoints and the stage-1 export carry it.
    input_layer_norm : bool
        Normalise every layer's frames before the mix (``LayerWeightedSum``'s
        ``layer_norm``); with one layer, a plain parameter-free layer norm of the
        input. False with one layer: no ``input_mix`` at all (the features go
        straight to the patch embedding, the state dict as before the option).

    Example
    -------
    >>> model = WAPTransformer(input_dim=32, d_model=16, num_layers=2, nhead=4,
    ...                        max_frames=50)
    >>> x = torch.randn(2, 10, 32)
    >>> lengths = torch.tensor([1.0, 0.6])
    >>> frame_mask = torch.zeros(2, 10, dtype=torch.bool)
    >>> frame_mask[0, :3] = True
    >>> z = model(x, lengths, frame_mask)
    >>> z.shape, bool(z[1, 6:].abs().sum() == 0)
    (torch.Size([2, 10, 16]), True)
    >>> mixed = WAPTransformer(input_dim=32, d_model=16, num_layers=2, nhead=4,
    ...                        max_frames=50, input_layers=3, input_layer_norm=True)
    >>> mixed(torch.randn(2, 10, 3 * 32), lengths).shape
    torch.Size([2, 10, 16])
    >>> mixed.input_mix.weights().tolist()  # uniform at the start
    [0.3333..., 0.3333..., 0.3333...]
    """

    def __init__(
        self,
        input_dim=1024,
        d_model=384,
        num_layers=3,
        nhead=6,
        mlp_ratio=4,
        max_frames=1500,
        dropout=0.0,
        mlp_layers=3,
        init_std=0.02,
        input_layers=1,
        input_layer_norm=False,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(
                f"WAPTransformer: num_layers must be >= 1, got {num_layers}"
            )
        if input_layers < 1:
            raise ValueError(
                f"WAPTransformer: input_layers must be >= 1, got {input_layers}"
            )
        self.input_dim = input_dim
        self.input_layers = input_layers
        self.input_mix = None
        if input_layers > 1 or input_layer_norm:
            self.input_mix = LayerWeightedSum(
                num_layers=input_layers,
                layer_dim=input_dim,
                layer_norm=input_layer_norm,
            )
        self.d_model = d_model
        self.max_frames = max_frames
        self.init_std = init_std
        self.patch_embedding = nn.Linear(input_dim, d_model)
        self.mask_embedding = nn.Parameter(torch.zeros(d_model))
        self.pos_embedding = nn.Parameter(torch.zeros(max_frames, d_model))
        self.blocks = nn.ModuleList(
            [
                TransformerBlock(d_model, nhead, mlp_ratio=mlp_ratio, dropout=dropout)
                for _ in range(num_layers)
            ]
        )
        self.layer_weights = nn.Parameter(torch.zeros(num_layers))
        self.aggregator = aggregation_mlp(
            d_model, num_layers=mlp_layers, dropout=dropout
        )
        self.reset_parameters()

    def reset_parameters(self):
        """Initialises the parameters.

        Truncated normal (``init_std``) for the embeddings and the transformer
        blocks, Xavier for the aggregation MLP, zero biases, uniform layer weights.

        Example
        -------
        >>> model = WAPTransformer(input_dim=8, d_model=8, num_layers=2, nhead=2,
        ...                        max_frames=4)
        >>> model.reset_parameters()
        >>> model.layer_weights.tolist()
        [0.0, 0.0]
        """
        std = self.init_std
        nn.init.trunc_normal_(self.pos_embedding, std=std, a=-2 * std, b=2 * std)
        nn.init.trunc_normal_(self.mask_embedding, std=std, a=-2 * std, b=2 * std)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # The aggregation MLP has no residual path: Xavier keeps its output near
        # unit scale (std 0.02 weights would shrink it ~0.4x per layer).
        for module in self.aggregator.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(self.layer_weights)
        if self.input_mix is not None:
            nn.init.zeros_(self.input_mix.layer_weights)

    def interpolated_pos_embedding(self, num_frames):
        """Returns position embeddings for ``num_frames`` frames.

        The first ``num_frames`` rows of the table if it is long enough;
        otherwise the whole table linearly interpolated to ``num_frames`` rows
        (``F.interpolate``, mode ``linear``, ``align_corners=False``).

        Arguments
        ---------
        num_frames : int
            Number of frames.

        Returns
        -------
        torch.Tensor
            [num_frames, d_model].

        Example
        -------
        >>> model = WAPTransformer(input_dim=8, d_model=8, num_layers=1, nhead=2,
        ...                        max_frames=4)
        >>> model.interpolated_pos_embedding(3).shape
        torch.Size([3, 8])
        >>> model.interpolated_pos_embedding(10).shape
        torch.Size([10, 8])
        """
        if num_frames <= self.max_frames:
            return self.pos_embedding[:num_frames]
        table = self.pos_embedding.t().unsqueeze(0)  # [1, d_model, max_frames]
        table = F.interpolate(
            table, size=num_frames, mode="linear", align_corners=False
        )
        return table.squeeze(0).t()

    def position_embeddings(self, n_valid, max_len):
        """Position embeddings of a padded batch, [B, T, d_model].

        Rows whose valid part is longer than ``max_frames`` get the table
        interpolated to their own valid length; padded positions get the
        non-interpolated table (or zeros past its end): they never reach a
        valid output.

        Arguments
        ---------
        n_valid : torch.Tensor
            Long [B], valid frames per row.
        max_len : int
            Padded length T.

        Returns
        -------
        torch.Tensor
            [B, T, d_model].

        Example
        -------
        >>> model = WAPTransformer(input_dim=8, d_model=8, num_layers=1, nhead=2,
        ...                        max_frames=4)
        >>> model.position_embeddings(torch.tensor([6, 3]), 6).shape
        torch.Size([2, 6, 8])
        """
        batch = n_valid.shape[0]
        if max_len <= self.max_frames:
            return self.pos_embedding[:max_len].unsqueeze(0).expand(batch, -1, -1)
        pos = self.pos_embedding.new_zeros(batch, max_len, self.d_model)
        pos[:, : self.max_frames] = self.pos_embedding
        for length in torch.unique(n_valid).tolist():
            if length <= self.max_frames:
                continue
            rows = (n_valid == length).nonzero(as_tuple=True)[0].to(pos.device)
            table = self.interpolated_pos_embedding(length)  # [length, d_model]
            pos[rows, :length] = table.unsqueeze(0).expand(rows.shape[0], -1, -1)
        return pos

    def forward(self, x, lengths=None, frame_mask=None, output_mask=None):
        """Computes frame-level representations.

        Arguments
        ---------
        x : torch.Tensor
            Encoder features [B, T, input_dim].
        lengths : torch.Tensor, optional
            Relative lengths [B]; None means every frame is valid.
        frame_mask : torch.Tensor, optional
            Bool [B, T]; True frames have their patch embedding replaced by
            ``mask_embedding``.
        output_mask : torch.Tensor, optional
            Bool [B, T]; when given, only these (valid) frames' outputs are
            computed and every other frame's output is zero. The outputs of the
            selected frames equal those of a full forward.

        Returns
        -------
        torch.Tensor
            [B, T, d_model], zero on padded frames (and outside
            ``output_mask``).

        Example
        -------
        >>> model = WAPTransformer(input_dim=8, d_model=8, num_layers=2, nhead=2,
        ...                        max_frames=10).eval()
        >>> x, lengths = torch.randn(2, 6, 8), torch.tensor([1.0, 0.5])
        >>> keep = torch.zeros(2, 6, dtype=torch.bool)
        >>> keep[0, [1, 4]] = keep[1, 2] = True
        >>> part, full = model(x, lengths, output_mask=keep), model(x, lengths)
        >>> torch.allclose(part[keep], full[keep], atol=1e-6), bool(part[~keep].any())
        (True, False)
        """
        channels = self.input_layers * self.input_dim
        if x.dim() != 3 or x.shape[-1] != channels:
            raise ValueError(
                f"WAPTransformer: expected input [B, T, {channels}] "
                f"({self.input_layers} layer(s) of {self.input_dim}), "
                f"got {tuple(x.shape)}"
            )
        batch, time, _ = x.shape
        if lengths is None:
            n_valid = torch.full((batch,), time, dtype=torch.long, device=x.device)
        else:
            n_valid = valid_frames(lengths, time).to(x.device)
        valid = torch.arange(time, device=x.device).unsqueeze(0) < n_valid.unsqueeze(1)

        if self.input_mix is not None:
            x = self.input_mix(x)  # [B, T, input_dim]
        h = self.patch_embedding(x)  # [B, T, d_model]
        if frame_mask is not None:
            if frame_mask.shape != (batch, time):
                raise ValueError(
                    f"WAPTransformer: frame_mask must have shape {(batch, time)}, "
                    f"got {tuple(frame_mask.shape)}"
                )
            h = torch.where(
                frame_mask.to(device=x.device, dtype=torch.bool).unsqueeze(-1),
                self.mask_embedding.to(h.dtype),
                h,
            )
        h = h + self.position_embeddings(n_valid, time).to(h.dtype)

        # Rows without any valid frame would give NaN in the softmax: let them
        # attend everywhere (their output is zeroed below anyway).
        key_mask = valid | (n_valid == 0).unsqueeze(1)
        weights = torch.softmax(self.layer_weights, dim=0)
        query_index = None
        if output_mask is not None:
            if output_mask.shape != (batch, time):
                raise ValueError(
                    f"WAPTransformer: output_mask must have shape {(batch, time)}, "
                    f"got {tuple(output_mask.shape)}"
                )
            query_index, present = frame_index(
                output_mask.to(device=x.device, dtype=torch.bool) & valid
            )
        z = None
        last = len(self.blocks) - 1
        for layer, (weight, block) in enumerate(zip(weights, self.blocks, strict=True)):
            if layer == last and query_index is not None:
                h = block(h, key_mask, query_index)  # [B, M, d_model]
                z = None if z is None else gather_frames(z, query_index)
            else:
                h = block(h, key_mask)
            # z + w * h in one pass over the activations (no zero-filled start).
            z = weight * h if z is None else torch.addcmul(z, weight, h)
        out = self.aggregator(z)
        if query_index is None:
            return out * valid.unsqueeze(-1).to(out.dtype)
        out = out * present.unsqueeze(-1).to(out.dtype)  # [B, M, d_model]
        full = out.new_zeros(batch, time, out.shape[-1])
        # Absent slots hold zeros and point at frame 0: adding them changes nothing.
        return full.scatter_add(1, query_index.unsqueeze(-1).expand_as(out), out)
