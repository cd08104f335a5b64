"""Adapters inside a pretrained encoder: LoRA in the attention, bottleneck adapters
after the feed-forward block.

Both start as the identity, so an adapted model equals the model it wraps until
the first optimiser step:

* :class:`DropoutLoRA` is SpeechBrain's ``LoRA`` (``W x + (alpha / r) B A x``,
  ``B`` zero-initialised) with dropout on the adapter's input, as in peft;
* :class:`LoRAWeight` (registered by :func:`parametrize_lora`) is the same update
  as a parametrization of the weight, for layers whose weight is read directly
  (WavLM's attention), with no dropout;
* :class:`BottleneckAdapter` is ``x + up(act(down(LN(x))))`` with a zero
  up-projection (weights and bias); :class:`AdaptedOutputLinear` puts one after a
  pretrained linear layer (the feed-forward block's output projection:
  ``feed_forward.output_dense`` in wav2vec 2.0 / HuBERT / WavLM, ``fc2`` in the
  Whisper encoder), i.e. inside that block's residual branch;
* :class:`AdapterInsertion` replaces the modules whose names match shell-style
  patterns (``fnmatch``, as SpeechBrain's ``AdaptedModel``) with an adapter class
  wrapping them; :func:`freeze_and_adapt` freezes a model and applies insertions,
  so that only the adapters train;
* :func:`parameter_counts` and :func:`log_parameter_counts` report trainable and
  frozen parameters;
* :func:`merge_lora` folds trained LoRA updates into the pretrained weights and
  :func:`load_merged_adapters` rebuilds an adapter-trained model from its saved
  adapters with the LoRA merged and everything frozen (the paper's Table 2
  setting 1: adapters in stage 1, new adapters on top in stage 2).

Module names (transformers 5): ``encoder.layers.{i}.attention.{q,k,v,out}_proj``
and ``encoder.layers.{i}.feed_forward.output_dense`` (wav2vec 2.0, HuBERT, WavLM);
``layers.{i}.self_attn.{q,k,v,out}_proj`` and ``layers.{i}.fc2`` (Whisper encoder).
WavLM reads its attention weights directly: use :func:`parametrize_lora` there.
peft (not a dependency) has LoRA but no bottleneck adapter; SpeechBrain's
``HoulsbyAdapterLinear`` is not zero-initialised.

Authors
 * ser_lib contributors
"""

import math
from fnmatch import fnmatch

import torch
from speechbrain.nnet.adapters import LoRA, replace_module
from speechbrain.utils.logger import get_logger
from torch import nn
from torch.nn.utils import parametrize

logger = get_logger(__name__)


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
    Table 2 setting 1, see :func:`load_merged_adapters`).

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


class AdapterInsertion:
    """Wraps every module whose name matches a pattern with an adapter class.

    Arguments
    ---------
    adapter_class : type
        Called as ``adapter_class(module, **adapter_kwargs)``; the result replaces
        the module (e.g. :class:`DropoutLoRA`, :class:`AdaptedOutputLinear`).
    target_layers : list of str
        Shell-style patterns of module names (``fnmatch``), e.g.
        ``"*layers.*.attention.q_proj"``.
    **adapter_kwargs
        Passed to ``adapter_class``.

    Example
    -------
    >>> model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> insertion = AdapterInsertion(DropoutLoRA, ["0", "2"], rank=2, alpha=2)
    >>> insertion(model)
    ['0', '2']
    >>> type(model[2]).__name__
    'DropoutLoRA'
    """

    def __init__(self, adapter_class, target_layers, **adapter_kwargs):
        self.adapter_class = adapter_class
        self.target_layers = list(target_layers)
        self.adapter_kwargs = adapter_kwargs

    def __call__(self, model):
        """Replaces the matching modules of ``model`` in place.

        Arguments
        ---------
        model : torch.nn.Module
            The model to adapt.

        Returns
        -------
        list of str
            Names of the wrapped modules.

        Raises
        ------
        ValueError
            If no module matches (names the patterns and the adapter class).
        """
        names = [
            name
            for name, _ in model.named_modules()
            if name and any(fnmatch(name, pattern) for pattern in self.target_layers)
        ]
        if not names:
            raise ValueError(
                f"No module of {type(model).__name__} matches {self.target_layers} "
                f"for {self.adapter_class.__name__}"
            )
        for name in names:
            module = model.get_submodule(name)
            replace_module(
                model, name, self.adapter_class(module, **self.adapter_kwargs)
            )
        return names


def freeze_and_adapt(model, insertions):
    """Freezes every parameter of ``model``, then applies the adapter insertions.

    Only the adapters' new parameters are then trainable.

    Arguments
    ---------
    model : torch.nn.Module
        The model to adapt in place.
    insertions : list of AdapterInsertion
        Applied in order.

    Returns
    -------
    dict
        Adapter class name -> number of modules wrapped.

    Example
    -------
    >>> model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    >>> freeze_and_adapt(model, [
    ...     AdapterInsertion(DropoutLoRA, ["0"], rank=2),
    ...     AdapterInsertion(AdaptedOutputLinear, ["1"], bottleneck_size=2),
    ... ])
    {'DropoutLoRA': 1, 'AdaptedOutputLinear': 1}
    >>> parameter_counts(model)
    {'trainable': 46, 'frozen': 40}
    """
    for param in model.parameters():
        param.requires_grad = False
    counts = {}
    for insertion in insertions:
        names = insertion(model)
        key = insertion.adapter_class.__name__
        counts[key] = counts.get(key, 0) + len(names)
    return counts


def parameter_counts(*modules):
    """Numbers of trainable and frozen parameters (shared parameters counted once).

    Arguments
    ---------
    *modules : torch.nn.Module
        The modules to count.

    Returns
    -------
    dict
        ``{"trainable": int, "frozen": int}``.

    Example
    -------
    >>> layer = nn.Linear(3, 2)
    >>> layer.bias.requires_grad = False
    >>> parameter_counts(layer)
    {'trainable': 6, 'frozen': 2}
    """
    seen, counts = set(), {"trainable": 0, "frozen": 0}
    for module in modules:
        for param in module.parameters():
            if id(param) in seen:
                continue
            seen.add(id(param))
            counts["trainable" if param.requires_grad else "frozen"] += param.numel()
    return counts


def log_parameter_counts(modules):
    """Logs trainable and frozen parameters per module and in total.

    Arguments
    ---------
    modules : dict
        Name -> module (e.g. a Brain's ``modules``).

    Returns
    -------
    dict
        Name (and ``"total"``) -> :func:`parameter_counts`.

    Example
    -------
    >>> log_parameter_counts({"head": nn.Linear(3, 2)})["total"]
    {'trainable': 8, 'frozen': 0}
    """
    report = {name: parameter_counts(module) for name, module in modules.items()}
    report["total"] = parameter_counts(*modules.values())
    for name, counts in report.items():
        total = counts["trainable"] + counts["frozen"]
        share = 100.0 * counts["trainable"] / max(total, 1)
        logger.info(
            f"Parameters of {name}: {counts['trainable']:,} trainable "
            f"({share:.2f} %), {counts['frozen']:,} frozen"
        )
    return report


def trainable_state_dict(module):
    """The trainable parameters of ``module`` (a small stage-2 checkpoint).

    Arguments
    ---------
    module : torch.nn.Module
        A model with frozen and trainable parameters.

    Returns
    -------
    dict
        Name -> detached tensor of every parameter that requires a gradient.

    Example
    -------
    >>> layer = nn.Linear(3, 2)
    >>> layer.weight.requires_grad = False
    >>> list(trainable_state_dict(layer))
    ['bias']
    """
    return {
        name: param.detach()
        for name, param in module.named_parameters()
        if param.requires_grad
    }


def with_adapters(model, insertions):
    """:func:`freeze_and_adapt` for a YAML ``!apply``: returns the adapted model.

    Arguments
    ---------
    model : torch.nn.Module
        The model to freeze and adapt in place (e.g. a trainable encoder wrapper).
    insertions : list of AdapterInsertion
        Applied in order.

    Returns
    -------
    torch.nn.Module
        ``model``.

    Example
    -------
    >>> model = with_adapters(nn.Sequential(nn.Linear(4, 4)), [
    ...     AdapterInsertion(AdaptedOutputLinear, ["0"], bottleneck_size=2)])
    >>> type(model[0]).__name__
    'AdaptedOutputLinear'
    """
    counts = freeze_and_adapt(model, insertions)
    logger.info(f"Encoder frozen; adapters inserted: {counts}")
    return model


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


def load_merged_adapters(model, insertions, checkpoint):
    """Rebuilds an adapter-trained model, merges its LoRA and freezes everything.

    Table 2 setting 1 of Gao et al. (adapters in stage 1, adapters in stage 2):
    ``model`` is the pretrained encoder, ``insertions`` the adapters of stage 1 and
    ``checkpoint`` their trained weights (:func:`trainable_state_dict` of the stage-1
    encoder, saved by :class:`ser_lib.brains.two_stage.MultiTaskSSLBrain`). The LoRA
    updates are merged into the weights (:func:`merge_lora`), the bottleneck adapters
    stay in place, and every parameter is frozen, so that the stage-2 adapters
    inserted next (:func:`with_adapters`) train on top of the stage-1 model. A
    ``None`` checkpoint returns ``model`` unchanged (the stage-1 encoder is a full
    fine-tuning export: Table 2 settings 2-3, Table 3).

    Arguments
    ---------
    model : torch.nn.Module
        The pretrained model (modified in place).
    insertions : list of AdapterInsertion
        The stage-1 adapters (the same targets and sizes as when they were trained).
    checkpoint : str or None
        A ``torch.save`` d dict of the stage-1 adapter weights.

    Returns
    -------
    torch.nn.Module
        ``model``.

    Raises
    ------
    ValueError
        If the checkpoint's names differ from the adapters' trainable parameters.

    Example
    -------
    >>> import copy
    >>> import torch
    >>> path = getfixture("tmp_path") / "adapters.ckpt"
    >>> torch.manual_seed(0) is not None
    True
    >>> stage1 = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    >>> pretrained = copy.deepcopy(stage1.state_dict())
    >>> insertions = [AdapterInsertion(DropoutLoRA, ["0"], rank=2, alpha=2),
    ...     AdapterInsertion(AdaptedOutputLinear, ["1"], bottleneck_size=2)]
    >>> _ = freeze_and_adapt(stage1, insertions)
    >>> for param in trainable_state_dict(stage1).values():
    ...     _ = nn.init.normal_(param)  # stands in for training
    >>> torch.save(trainable_state_dict(stage1), path)
    >>> model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    >>> model.load_state_dict(pretrained)
    <All keys matched successfully>
    >>> model = load_merged_adapters(model, insertions, path)
    >>> x = torch.randn(3, 4)
    >>> torch.allclose(model(x), stage1.eval()(x), atol=1e-6)
    True
    >>> type(model[0]).__name__, type(model[1]).__name__, parameter_counts(model)
    ('Linear', 'AdaptedOutputLinear', {'trainable': 0, 'frozen': 70})
    """
    if checkpoint is None:
        return model
    freeze_and_adapt(model, insertions)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    expected = set(trainable_state_dict(model))
    if set(state) != expected:
        raise ValueError(
            f"{checkpoint} does not hold the stage-1 adapters of these insertions: "
            f"missing {sorted(expected - set(state))[:5]}, "
            f"unexpected {sorted(set(state) - expected)[:5]}"
        )
    model.load_state_dict(state, strict=False)
    merged = merge_lora(model)
    model.requires_grad_(False)
    logger.info(
        "Stage-1 adapters loaded from %s: %d LoRA merged into the weights, "
        "bottleneck adapters frozen",
        checkpoint,
        len(merged),
    )
    return model
