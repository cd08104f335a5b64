"""Which parameters of a model train: counts, their log, the trainable state dict.

Authors
 * ser_lib contributors
"""

from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)


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
    >>> from torch import nn
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
    >>> from torch import nn
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
    >>> from torch import nn
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
