"""What the trainable encoders share: layer choice and gradient checkpointing."""

import warnings

import torch


def _select_hidden(outputs, layers):
    """Averages ``hidden_states[i]`` for ``i`` in ``layers``; entry -1 is the output."""
    hidden = list(outputs.hidden_states)
    hidden[-1] = outputs.last_hidden_state
    return torch.stack([hidden[i] for i in layers]).mean(dim=0)


def _check_layers(layers, num_states, source):
    """Normalises layer indices into ``[0, num_states)``; raises if out of range."""
    layers = [layers] if isinstance(layers, int) else list(layers)
    if not layers:
        raise ValueError("A trainable encoder needs at least one layer index")
    for index in layers:
        if not -num_states <= index < num_states:
            raise ValueError(
                f"Layer index {index} is out of range for {source}, which has "
                f"{num_states} hidden states (indices {-num_states} to {num_states - 1})"
            )
    return [index % num_states for index in layers]


def _enable_checkpointing(model):
    """Non-reentrant gradient checkpointing of the transformer layers.

    ``gradient_checkpointing_enable`` exists in transformers 4 and 5 (deprecated
    alias in 5); ``use_reentrant`` is passed explicitly because 4.x defaults to the
    reentrant variant, which drops the gradients of frozen-input segments.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False}
        )
