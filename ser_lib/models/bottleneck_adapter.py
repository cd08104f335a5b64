"""Bottleneck adapters: ``x + up(act(down(LN(x))))`` with a zero up-projection.

* :class:`BottleneckAdapter` starts as the identity (up-projection weights and
  bias at zero);
* :class:`AdaptedOutputLinear` puts one after a pretrained linear layer (the
  feed-forward block's output projection: ``feed_forward.output_dense`` in
  wav2vec 2.0 / HuBERT / WavLM, ``fc2`` in the Whisper encoder), i.e. inside that
  block's residual branch.

peft (not a dependency) has no bottleneck adapter, and SpeechBrain's
``HoulsbyAdapterLinear`` is not zero-initialised. Where they go in an encoder:
:mod:`ser_lib.models.encoder_adapters`.

Authors
 * ser_lib contributors
"""

from torch import nn


class BottleneckAdapter(nn.Module):
    """Residual bottleneck adapter: ``x + up(dropout(act(down(LN(x)))))``.

    The up-projection's weight and bias start at zero, so the adapter starts as the
    identity (and its down-projection still receives gradients after the first step).

    Arguments
    ---------
    input_size : int
        Feature dimension d.
    bottleneck_size : int
        Inner dimension.
    activation : type
        Activation class (default ReLU).
    dropout : float
        Dropout after the activation.
    layer_norm : bool
        Whether to normalise the adapter's input.

    Example
    -------
    >>> import torch
    >>> adapter = BottleneckAdapter(8, bottleneck_size=2)
    >>> x = torch.randn(2, 5, 8)
    >>> torch.equal(adapter(x), x)
    True
    """

    def __init__(
        self,
        input_size,
        bottleneck_size=256,
        activation=nn.ReLU,
        dropout=0.0,
        layer_norm=True,
    ):
        super().__init__()
        self.norm = nn.LayerNorm(input_size) if layer_norm else nn.Identity()
        self.down_proj = nn.Linear(input_size, bottleneck_size)
        self.activation = activation()
        self.dropout = nn.Dropout(dropout)
        self.up_proj = nn.Linear(bottleneck_size, input_size)
        nn.init.zeros_(self.up_proj.weight)
        nn.init.zeros_(self.up_proj.bias)

    def forward(self, x):
        """Adds the bottleneck branch to ``x``.

        Arguments
        ---------
        x : torch.Tensor
            [..., input_size].

        Returns
        -------
        torch.Tensor
            Same shape as ``x``.
        """
        branch = self.down_proj(self.norm(x))
        return x + self.up_proj(self.dropout(self.activation(branch)))


class AdaptedOutputLinear(nn.Module):
    """A pretrained linear layer followed by a :class:`BottleneckAdapter`.

    Wrapping a feed-forward block's output projection puts the adapter after the
    block's last fully-connected layer, inside its residual branch. The pretrained
    layer is frozen; the new modules are created on its device and dtype. Wrapping
    an ``AdaptedOutputLinear`` stacks a new adapter after the frozen one (stage 2 of
    Table 2 setting 1, see
    :func:`ser_lib.models.encoder_adapters.load_merged_adapters`).

    Arguments
    ---------
    target_module : torch.nn.Linear
        The pretrained layer.
    bottleneck_size : int
        Inner dimension of the adapter.
    activation : type
        Activation class of the adapter.
    dropout : float
        Dropout inside the adapter.

    Example
    -------
    >>> import torch
    >>> base = nn.Linear(8, 6)
    >>> adapted = AdaptedOutputLinear(base, bottleneck_size=3)
    >>> x = torch.randn(2, 8)
    >>> torch.equal(adapted(x), base(x)), base.weight.requires_grad
    (True, False)
    >>> stacked = AdaptedOutputLinear(adapted, bottleneck_size=3)
    >>> stacked.out_features, torch.equal(stacked(x), base(x))
    (6, True)
    """

    def __init__(
        self, target_module, bottleneck_size=256, activation=nn.ReLU, dropout=0.0
    ):
        super().__init__()
        if not isinstance(target_module, (nn.Linear, AdaptedOutputLinear)):
            raise ValueError(
                "AdaptedOutputLinear wraps a torch.nn.Linear (or an "
                f"AdaptedOutputLinear), got {type(target_module)}"
            )
        self.pretrained_module = target_module
        for param in target_module.parameters():
            param.requires_grad = False
        weight = next(target_module.parameters())
        self.adapter = BottleneckAdapter(
            target_module.out_features, bottleneck_size, activation, dropout
        ).to(device=weight.device, dtype=weight.dtype)

    @property
    def out_features(self):
        """Output size (that of the wrapped layer)."""
        return self.pretrained_module.out_features

    def forward(self, x):
        """Pretrained layer, then the adapter.

        Arguments
        ---------
        x : torch.Tensor
            [..., in_features].

        Returns
        -------
        torch.Tensor
            [..., out_features].
        """
        return self.adapter(self.pretrained_module(x))
