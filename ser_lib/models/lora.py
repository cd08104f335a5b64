"""LoRA for the linear layers of a pretrained encoder.

Both forms add ``(alpha / r) B A`` to a frozen weight ``W``, with ``B``
zero-initialised, so the adapted layer equals the pretrained one until the first
optimiser step:

* :class:`DropoutLoRA` is SpeechBrain's ``LoRA`` (``W x + (alpha / r) B A x``) with
  dropout on the adapter's input, as in peft; it wraps the layer;
* :class:`LoRAWeight` (registered by :func:`parametrize_lora`) is the same update
  as a parametrization of the weight, for layers whose weight is read directly
  (WavLM's attention), with no dropout;
* :func:`merge_lora` folds trained LoRA updates of either form into the pretrained
  weights.

Where they go in an encoder: :mod:`ser_lib.models.encoder_adapters`.

Authors
 * ser_lib contributors
"""

import math

import torch
from speechbrain.nnet.adapters import LoRA, replace_module
from torch import nn
from torch.nn.utils import parametrize


class DropoutLoRA(LoRA):
    """LoRA with dropout on the adapter branch's input.

    ``y = W x + (alpha / rank) * B A dropout(x)``; ``B`` starts at zero, so ``y = W x``
    at initialisation. The wrapped module is frozen.

    Arguments
    ---------
    target_module : torch.nn.Linear
        The pretrained layer.
    rank : int
        Rank r of ``B A``.
    alpha : float
        Scaling numerator (``alpha / rank``; SpeechBrain's default of 1 would scale
        by ``1 / rank``).
    dropout : float
        Dropout probability on the adapter's input.

    Example
    -------
    >>> import torch
    >>> base = nn.Linear(8, 6)
    >>> lora = DropoutLoRA(base, rank=4, alpha=4, dropout=0.1).eval()
    >>> x = torch.randn(2, 3, 8)
    >>> torch.equal(lora(x), base(x)), lora.scaling
    (True, 1.0)
    """

    def __init__(self, target_module, rank=16, alpha=1.0, dropout=0.0):
        super().__init__(target_module, rank=rank, alpha=alpha)
        self.adapter_dropout = nn.Dropout(dropout)

    def forward(self, x):
        """Pretrained output plus the scaled low-rank update.

        Arguments
        ---------
        x : torch.Tensor
            Input [..., in_features].

        Returns
        -------
        torch.Tensor
            Output [..., out_features].
        """
        update = self.adapter_up_proj(self.adapter_down_proj(self.adapter_dropout(x)))
        return self.pretrained_module(x) + update * self.scaling


class LoRAWeight(nn.Module):
    """LoRA as a parametrization of a weight: ``W -> W + (alpha / rank) B A``.

    For layers whose weight is read directly instead of through their ``forward``
    (WavLM's attention passes ``q_proj.weight`` to
    ``F.multi_head_attention_forward``), where a wrapping module cannot work.
    ``B`` starts at zero. Register it with :func:`parametrize_lora`.

    Arguments
    ---------
    out_features : int
        Rows of the weight.
    in_features : int
        Columns of the weight.
    rank : int
        Rank r.
    alpha : float
        Scaling numerator.

    Example
    -------
    >>> import torch
    >>> lora = LoRAWeight(6, 8, rank=2, alpha=2)
    >>> weight = torch.randn(6, 8)
    >>> torch.equal(lora(weight), weight)
    True
    """

    def __init__(self, out_features, in_features, rank=16, alpha=1.0):
        super().__init__()
        self.down = nn.Parameter(torch.empty(rank, in_features))
        self.up = nn.Parameter(torch.zeros(out_features, rank))
        nn.init.kaiming_uniform_(self.down, a=math.sqrt(5))  # as nn.Linear
        self.scaling = alpha / rank

    def forward(self, weight):
        """Returns the adapted weight.

        Arguments
        ---------
        weight : torch.Tensor
            The pretrained weight [out_features, in_features].

        Returns
        -------
        torch.Tensor
            ``weight + scaling * up @ down``.
        """
        return weight + (self.up @ self.down).to(weight.dtype) * self.scaling


def parametrize_lora(target_module, rank=16, alpha=1.0):
    """Registers a :class:`LoRAWeight` on the weight of a linear layer, in place.

    The pretrained weight and bias are frozen; only ``A`` and ``B`` train.

    Arguments
    ---------
    target_module : torch.nn.Linear
        The pretrained layer.
    rank : int
        Rank r.
    alpha : float
        Scaling numerator.

    Returns
    -------
    torch.nn.Linear
        The same layer, parametrized.

    Example
    -------
    >>> import torch
    >>> layer = nn.Linear(8, 6)
    >>> x = torch.randn(2, 8)
    >>> before = layer(x)
    >>> torch.equal(parametrize_lora(layer, rank=2)(x), before)
    True
    >>> sorted(n for n, p in layer.named_parameters() if p.requires_grad)
    ['parametrizations.weight.0.down', 'parametrizations.weight.0.up']
    """
    if not isinstance(target_module, nn.Linear):
        raise ValueError(
            f"parametrize_lora needs a torch.nn.Linear, got {type(target_module)}"
        )
    for param in target_module.parameters():
        param.requires_grad = False
    weight = target_module.weight
    lora = LoRAWeight(weight.shape[0], weight.shape[1], rank, alpha).to(
        device=weight.device, dtype=weight.dtype
    )
    parametrize.register_parametrization(target_module, "weight", lora)
    return target_module


def merge_lora(model):
    """Folds every LoRA update of ``model`` into its pretrained weight, in place.

    A :class:`DropoutLoRA` (or SpeechBrain ``LoRA``) on a linear layer is replaced by
    that layer with ``W + (alpha / rank) B A`` as its weight; a :class:`LoRAWeight`
    parametrization is removed, leaving the adapted weight. The model's function is
    unchanged (LoRA dropout is inactive in evaluation). Bottleneck adapters are not
    linear and stay as they are.

    Arguments
    ---------
    model : torch.nn.Module
        The model to merge in place.

    Returns
    -------
    list of str
        Names of the merged modules.

    Raises
    ------
    ValueError
        If a LoRA wraps something other than a linear layer.

    Example
    -------
    >>> import torch
    >>> model = nn.Sequential(DropoutLoRA(nn.Linear(4, 3), rank=2, alpha=2))
    >>> _ = nn.init.normal_(model[0].adapter_up_proj.weight)
    >>> x = torch.randn(5, 4)
    >>> before = model(x)
    >>> merge_lora(model), type(model[0]).__name__
    (['0'], 'Linear')
    >>> torch.allclose(model(x), before, atol=1e-6)
    True
    """
    merged = []
    wrapped = [(n, m) for n, m in model.named_modules() if isinstance(m, LoRA)]
    for name, module in wrapped:
        base = module.pretrained_module
        if not isinstance(base, nn.Linear):
            raise ValueError(f"merge_lora merges linear layers, {name} is {type(base)}")
        update = module.adapter_up_proj.weight @ module.adapter_down_proj.weight
        with torch.no_grad():
            base.weight += (update * module.scaling).to(base.weight.dtype)
        replace_module(model, name, base)
        merged.append(name)
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module, "weight") and any(
            isinstance(p, LoRAWeight) for p in module.parametrizations["weight"]
        ):
            parametrize.remove_parametrizations(
                module, "weight", leave_parametrized=True
            )
            merged.append(name)
    return merged
