"""The frozen-encoder baseline's layer mixing (SUPERB / EmoBox style).

The baseline reads cached encoder features, mixes the encoder's layers with a
learnable softmax-weighted sum (:class:`LayerWeightedSum`), projects every frame
(a linear layer), mean-pools the valid frames (:func:`ser_lib.models.mean_pool`) and
classifies the utterance with a linear layer.

Layouts of a cache that holds several layers (``layout``):

* ``"flat"``: ``[B, T, L * D]``, layer-major channels: channels ``l * D`` to
  ``(l + 1) * D - 1`` are layer ``l`` (what a 2-D ``[T, L * D]`` cache entry gives
  after batching; the layout ``ser_lib.features`` stores);
* ``"stacked"``: ``[B, L, T, D]``.

A cache of one layer is the flat layout with ``L = 1``.

Authors
 * ser_lib contributors
"""

import torch
import torch.nn.functional as F
from torch import nn

LAYOUTS = ("flat", "stacked")


class LayerWeightedSum(nn.Module):
    """Softmax-weighted sum of chosen encoder layers: ``sum_l softmax(w)_l X^l``.

    Arguments
    ---------
    num_layers : int
        L, the number of layers the cached features hold.
    layer_dim : int
        D, the size of one layer's frames.
    layers : int or sequence of int, optional
        The cached layers to mix (indices into the L cached layers; negative
        counts from the end). None: all of them. One index: that layer alone
        (its weight is then 1 and has no effect).
    layout : str
        ``"flat"`` (``[B, T, L * D]``, layer-major channels) or ``"stacked"``
        (``[B, L, T, D]``); see the module docstring.
    layer_norm : bool
        Normalise every frame of every chosen layer over its D channels (a layer
        norm without learnable scale and shift, SUPERB's ``layer_norm`` option)
        before weighting, so that layers of larger scale do not dominate the mix
        whatever their weights. False: the raw layers (the behaviour before the
        option existed).

    Example
    -------
    >>> mix = LayerWeightedSum(num_layers=3, layer_dim=2)
    >>> x = torch.cat([torch.full((1, 4, 2), float(l)) for l in range(3)], dim=-1)
    >>> mix(x).shape, mix(x)[0, 0].tolist()
    (torch.Size([1, 4, 2]), [1.0, 1.0])
    >>> LayerWeightedSum(num_layers=3, layer_dim=2, layers=-1)(x)[0, 0].tolist()
    [2.0, 2.0]
    >>> mix.weights().sum().item()
    1.0
    >>> normed = LayerWeightedSum(num_layers=3, layer_dim=2, layer_norm=True)
    >>> x = torch.tensor([[[1.0, 3.0, 0.0, 100.0, 5.0, 5.0]]])  # [B=1, T=1, 3 * 2]
    >>> normed(x)[0, 0].tolist()  # mean of (-1, 1), (-1, 1) and (0, 0)
    [-0.6666..., 0.6666...]
    """

    def __init__(
        self, num_layers, layer_dim, layers=None, layout="flat", layer_norm=False
    ):
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
        if num_layers < 1 or layer_dim < 1:
            raise ValueError(
                f"num_layers and layer_dim must be positive, got {num_layers}, "
                f"{layer_dim}"
            )
        if layers is None:
            layers = list(range(num_layers))
        layers = [layers] if isinstance(layers, int) else list(layers)
        if not layers:
            raise ValueError("LayerWeightedSum needs at least one layer")
        for index in layers:
            if not -num_layers <= index < num_layers:
                raise ValueError(
                    f"Layer {index} does not exist: the features hold {num_layers} "
                    "layers"
                )
        self.num_layers = num_layers
        self.layer_dim = layer_dim
        self.layout = layout
        self.layer_norm = bool(layer_norm)
        self.layers = [index % num_layers for index in layers]
        self.register_buffer(
            "layer_index", torch.tensor(self.layers, dtype=torch.long), persistent=False
        )
        # Zeros: the mix starts as the plain average of the chosen layers.
        self.layer_weights = nn.Parameter(torch.zeros(len(self.layers)))

    def weights(self):
        """The mixing weights ``softmax(w)`` over the chosen layers, [len(layers)]."""
        return torch.softmax(self.layer_weights, dim=0)

    def split_layers(self, x):
        """The chosen layers of ``x`` as ``[B, len(layers), T, D]``.

        Arguments
        ---------
        x : torch.Tensor
            ``[B, T, L * D]`` (flat) or ``[B, L, T, D]`` (stacked).

        Returns
        -------
        torch.Tensor

        Example
        -------
        >>> mix = LayerWeightedSum(num_layers=2, layer_dim=3, layers=[1])
        >>> mix.split_layers(torch.arange(6.0).view(1, 1, 6)).tolist()
        [[[[3.0, 4.0, 5.0]]]]
        """
        if self.layout == "flat":
            expected = self.num_layers * self.layer_dim
            if x.dim() != 3 or x.shape[-1] != expected:
                raise ValueError(
                    f"LayerWeightedSum (flat): expected [B, T, {expected}] "
                    f"({self.num_layers} layers x {self.layer_dim}), got "
                    f"{tuple(x.shape)}"
                )
            batch, time, _ = x.shape
            x = x.view(batch, time, self.num_layers, self.layer_dim).transpose(1, 2)
        elif (
            x.dim() != 4
            or x.shape[1] != self.num_layers
            or x.shape[-1] != (self.layer_dim)
        ):
            raise ValueError(
                f"LayerWeightedSum (stacked): expected [B, {self.num_layers}, T, "
                f"{self.layer_dim}], got {tuple(x.shape)}"
            )
        return x.index_select(1, self.layer_index)

    def forward(self, x):
        """Mixes the chosen layers.

        Arguments
        ---------
        x : torch.Tensor
            ``[B, T, L * D]`` (flat) or ``[B, L, T, D]`` (stacked).

        Returns
        -------
        torch.Tensor
            ``[B, T, D]``.
        """
        layers = self.split_layers(x)  # [B, n, T, D]
        if self.layer_norm:  # per frame and layer: padded frames stay apart
            layers = F.layer_norm(layers, (self.layer_dim,))
        weights = self.weights().to(layers.dtype)
        return torch.einsum("bntd,n->btd", layers, weights)
