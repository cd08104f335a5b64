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


def _layers_for_call(layers, default, num_states, source):
    """``default`` when ``layers`` is None, else ``layers`` checked by :func:`_check_layers`."""
    return default if layers is None else _check_layers(layers, num_states, source)


def _frame_counts(num_frames, wavs, wav_lens, shortest):
    """Absolute sample lengths, frame counts and the longest count of a padded batch.

    Arguments
    ---------
    num_frames : callable
        Frames the encoder outputs for a number of samples.
    wavs : torch.Tensor
        [B, samples].
    wav_lens : torch.Tensor
        Relative lengths [B].
    shortest : int
        Samples of the shortest input that gives a frame (the error message).

    Returns
    -------
    lens : torch.Tensor
        Samples [B] (long).
    counts : torch.Tensor
        Frames [B], on the device of ``wavs``.
    max_frames : int
        ``counts.max()``.
    """
    lens = torch.round(wav_lens * wavs.shape[1]).long()
    counts = torch.tensor([num_frames(n) for n in lens.tolist()], device=wavs.device)
    if int(counts.min()) < 1:
        raise ValueError(
            f"An input of {int(lens.min())} samples is shorter than one frame "
            f"({shortest} samples); pad short utterances when loading"
        )
    return lens, counts, int(counts.max())


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
