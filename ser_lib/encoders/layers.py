"""Layer choice and length helpers shared by the frozen encoders.

See :mod:`ser_lib.encoders` for the layer choice and the "all layers" feature
layout that :func:`select_hidden_states` and :func:`split_hidden_states` implement.
"""

import torch

ALL_LAYERS = "all"


def absolute_lengths(rel_lens, max_len):
    """Converts SpeechBrain relative lengths to integer lengths.

    Arguments
    ---------
    rel_lens : torch.Tensor
        Relative lengths in [0, 1], shape [batch].
    max_len : int
        The padded length that a relative length of 1.0 stands for.

    Returns
    -------
    torch.Tensor
        Integer lengths (long), shape [batch], in [0, max_len].

    Example
    -------
    >>> absolute_lengths(torch.tensor([1.0, 0.5, 0.333]), 300)
    tensor([300, 150, 100])
    """
    return torch.round(rel_lens * max_len).long().clamp(0, max_len)


def resolve_layers(layers, num_states, source):
    """Validates a layer choice and makes its indices non-negative.

    Arguments
    ---------
    layers : int or sequence of int or str
        An index into the ``num_states`` hidden states (negative counts from the
        end), a list of indices to average, or ``"all"`` (:data:`ALL_LAYERS`).
    num_states : int
        The number of hidden states (transformer layers + 1).
    source : str
        The model, for the error message.

    Returns
    -------
    list of int or str
        Sorted-as-given non-negative indices, or ``"all"``.

    Example
    -------
    >>> resolve_layers(-1, 7, "m"), resolve_layers([2, -2], 7, "m")
    ([6], [2, 5])
    >>> resolve_layers("all", 7, "m")
    'all'
    """
    if isinstance(layers, str):
        if layers != ALL_LAYERS:
            raise ValueError(
                f"Layer choice {layers!r} for {source}: use an int, a list of ints "
                f"or {ALL_LAYERS!r}"
            )
        return ALL_LAYERS
    layers = [layers] if isinstance(layers, int) else list(layers)
    if not layers:
        raise ValueError(f"{source}: the layer list is empty")
    for index in layers:
        if not -num_states <= index < num_states:
            raise ValueError(
                f"Layer index {index} is out of range for {source}, which "
                f"has {num_states} hidden states (indices {-num_states} to "
                f"{num_states - 1})"
            )
    return [index % num_states for index in layers]


def select_hidden_states(hidden_states, layers):
    """The features of a layer choice from the list of hidden states.

    Arguments
    ---------
    hidden_states : sequence of torch.Tensor
        Every hidden state, each [batch, frames, dim].
    layers : list of int or str
        Output of :func:`resolve_layers`.

    Returns
    -------
    torch.Tensor
        The average of the chosen states [batch, frames, dim], or with ``"all"``
        their concatenation [batch, frames, num_states * dim] (state-major).

    Example
    -------
    >>> states = [torch.full((1, 2, 3), float(i)) for i in range(3)]
    >>> select_hidden_states(states, [0, 2])[0, 0]
    tensor([1., 1., 1.])
    >>> select_hidden_states(states, "all")[0, 0]
    tensor([0., 0., 0., 1., 1., 1., 2., 2., 2.])
    """
    if layers == ALL_LAYERS:
        return torch.cat(list(hidden_states), dim=-1)
    return torch.stack([hidden_states[i] for i in layers]).mean(dim=0)


def split_hidden_states(feats, num_states):
    """Views "all layers" features [..., S * D] as [..., S, D] (see the module doc).

    Arguments
    ---------
    feats : torch.Tensor or numpy.ndarray
        Features whose last dimension is ``num_states * D``.
    num_states : int
        ``S``, the ``num_states`` entry of the cache fingerprint.

    Returns
    -------
    torch.Tensor or numpy.ndarray
        The same data, [..., num_states, D].

    Example
    -------
    >>> states = [torch.full((1, 2, 3), float(i)) for i in range(3)]
    >>> split_hidden_states(select_hidden_states(states, "all"), 3)[0, 0, :, 0]
    tensor([0., 1., 2.])
    """
    dim = feats.shape[-1]
    if dim % num_states:
        raise ValueError(
            f"Feature dimension {dim} is not a multiple of num_states={num_states}"
        )
    return feats.reshape(*feats.shape[:-1], num_states, dim // num_states)


def layer_fingerprint_entries(layers, num_states, state_dim):
    """The fingerprint entries of a layer choice (output of :func:`resolve_layers`).

    Example
    -------
    >>> layer_fingerprint_entries([2, 3], 7, 16)
    {'layers': [2, 3]}
    >>> layer_fingerprint_entries("all", 7, 16)
    {'layers': 'all', 'num_states': 7, 'state_dim': 16}
    """
    if layers == ALL_LAYERS:
        return {"layers": ALL_LAYERS, "num_states": num_states, "state_dim": state_dim}
    return {"layers": list(layers)}
