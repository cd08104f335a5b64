"""Adapters inside a pretrained encoder: where they go, freezing, and stage-1 reuse.

Every adapter starts as the identity, so an adapted model equals the model it
wraps until the first optimiser step. One module per kind of adapter, one here for
putting them into an encoder:

* LoRA in the attention (:mod:`ser_lib.models.lora`): :class:`DropoutLoRA`
  wraps a linear layer, :func:`parametrize_lora` parametrizes its weight
  (:class:`LoRAWeight`), :func:`merge_lora` folds trained updates into the weights;
* bottleneck adapters after the feed-forward block
  (:mod:`ser_lib.models.bottleneck_adapter`): :class:`BottleneckAdapter` and
  :class:`AdaptedOutputLinear`;
* counting what trains (:mod:`ser_lib.models.trainable_params`):
  :func:`parameter_counts`, :func:`log_parameter_counts`,
  :func:`trainable_state_dict`;
* here: :class:`AdapterInsertion` replaces the modules whose names match
  shell-style patterns (``fnmatch``, as SpeechBrain's ``AdaptedModel``) with an
  adapter class wrapping them; :func:`freeze_and_adapt` (and :func:`with_adapters`
  for a YAML ``!apply``) freezes a model and applies insertions, so that only the
  adapters train; :func:`load_merged_adapters` rebuilds an adapter-trained model
  from its saved adapters with the LoRA merged and everything frozen (the paper's
  Table 2 setting 1: adapters in stage 1, new adapters on top in stage 2).

Every name above is importable from this module (the recipes' YAML files write
``!new:ser_lib.models.encoder_adapters.DropoutLoRA``).

Module names (transformers 5): ``encoder.layers.{i}.attention.{q,k,v,out}_proj``
and ``encoder.layers.{i}.feed_forward.output_dense`` (wav2vec 2.0, HuBERT, WavLM);
``layers.{i}.self_attn.{q,k,v,out}_proj`` and ``layers.{i}.fc2`` (Whisper encoder).
WavLM reads its attention weights directly: use :func:`parametrize_lora` there.

Authors
 * ser_lib contributors
"""

from fnmatch import fnmatch

import torch
from speechbrain.nnet.adapters import replace_module
from speechbrain.utils.logger import get_logger

from ser_lib.models.bottleneck_adapter import AdaptedOutputLinear, BottleneckAdapter
from ser_lib.models.lora import DropoutLoRA, LoRAWeight, merge_lora, parametrize_lora
from ser_lib.models.trainable_params import (
    log_parameter_counts,
    parameter_counts,
    trainable_state_dict,
)

__all__ = [
    "AdaptedOutputLinear",
    "AdapterInsertion",
    "BottleneckAdapter",
    "DropoutLoRA",
    "LoRAWeight",
    "freeze_and_adapt",
    "load_merged_adapters",
    "log_parameter_counts",
    "merge_lora",
    "parameter_counts",
    "parametrize_lora",
    "trainable_state_dict",
    "with_adapters",
]

logger = get_logger(__name__)


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
    >>> from torch import nn
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
    >>> from torch import nn
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
    >>> from torch import nn
    >>> model = with_adapters(nn.Sequential(nn.Linear(4, 4)), [
    ...     AdapterInsertion(AdaptedOutputLinear, ["0"], bottleneck_size=2)])
    >>> type(model[0]).__name__
    'AdaptedOutputLinear'
    """
    counts = freeze_and_adapt(model, insertions)
    logger.info(f"Encoder frozen; adapters inserted: {counts}")
    return model


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
    >>> from torch import nn
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
