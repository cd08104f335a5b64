"""Stage-2 adapters inside transformers encoders: identity at the start, gradients only
into the adapters (also with non-reentrant gradient checkpointing), parameter counts."""

import copy

import pytest
import torch
from conftest import TINY_HUBERT_SETTINGS
from torch import nn

from ser_lib.models.encoder_adapters import (
    AdaptedOutputLinear,
    AdapterInsertion,
    DropoutLoRA,
    freeze_and_adapt,
    log_parameter_counts,
    parameter_counts,
    parametrize_lora,
    trainable_state_dict,
)

NO_DROPOUT = dict(
    hidden_dropout=0.0,
    attention_dropout=0.0,
    activation_dropout=0.0,
    feat_proj_dropout=0.0,
    layerdrop=0.0,
    mask_time_prob=0.0,
)
W2V_LORA = ["*encoder.layers.*.attention.q_proj", "*encoder.layers.*.attention.v_proj"]
W2V_FFN = ["*encoder.layers.*.feed_forward.output_dense"]
WHISPER_LORA = ["*layers.*.self_attn.q_proj", "*layers.*.self_attn.v_proj"]
WHISPER_FFN = ["*layers.*.fc2"]
LORA = dict(rank=4, alpha=4, dropout=0.05)
BOTTLENECK = dict(bottleneck_size=8)


def _ssl(kind):
    import transformers

    config_class, model_class, stable = {
        "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2Model", True),  # XLS-R-like, pre-LN
        "hubert": ("HubertConfig", "HubertModel", False),  # HuBERT-base-like, post-LN
        "wavlm": ("WavLMConfig", "WavLMModel", True),
    }[kind]
    config = getattr(transformers, config_class)(
        feat_extract_norm="layer" if stable else "group",
        do_stable_layer_norm=stable,
        **TINY_HUBERT_SETTINGS,
        **NO_DROPOUT,
    )
    torch.manual_seed(0)
    return getattr(transformers, model_class)(config)


def _whisper():
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    config = WhisperConfig(
        num_mel_bins=8,
        d_model=32,
        encoder_layers=2,
        encoder_attention_heads=2,
        encoder_ffn_dim=64,
        max_source_positions=16,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        encoder_layerdrop=0.0,
    )
    torch.manual_seed(0)
    return WhisperEncoder(config)


def _insertions(kind):
    if kind == "whisper":
        lora_targets, ffn_targets = WHISPER_LORA, WHISPER_FFN
    else:
        lora_targets, ffn_targets = W2V_LORA, W2V_FFN
    if kind == "wavlm":  # reads q/k/v weights directly: LoRA as a parametrization
        lora = AdapterInsertion(parametrize_lora, lora_targets, rank=4, alpha=4)
    else:
        lora = AdapterInsertion(DropoutLoRA, lora_targets, **LORA)
    return [lora, AdapterInsertion(AdaptedOutputLinear, ffn_targets, **BOTTLENECK)]


def _inputs(kind):
    torch.manual_seed(1)
    if kind == "whisper":
        return {"input_features": torch.randn(2, 8, 32)}
    wav = torch.randn(2, 4000)
    mask = torch.ones(2, 4000, dtype=torch.long)
    mask[1, 2500:] = 0
    wav[1, 2500:] = 0.0
    if kind == "hubert":  # group norm: no attention mask (as the frozen HFEncoder)
        return {"input_values": wav}
    return {"input_values": wav, "attention_mask": mask}


KINDS = ["wav2vec2", "hubert", "wavlm", "whisper"]


def _build(kind):
    return _whisper() if kind == "whisper" else _ssl(kind)


@pytest.mark.parametrize("kind", KINDS)
def test_adapted_encoder_equals_original_at_start(kind):
    original = _build(kind)
    adapted = copy.deepcopy(original)
    counts = freeze_and_adapt(adapted, _insertions(kind))
    assert sum(counts.values()) == 2 * 2 + 2  # 2 layers x (q, v) + 2 FFNs
    inputs = _inputs(kind)
    for mode in ("eval", "train"):  # train: dropout is off in these configs
        getattr(original, mode)()
        getattr(adapted, mode)()
        if mode == "train":  # LoRA's own dropout must not matter when B = 0
            torch.manual_seed(2)
        with torch.no_grad():
            expected = original(**inputs).last_hidden_state
            got = adapted(**inputs).last_hidden_state
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    # The adapters change the output once their up-projections are non-zero.
    for name, param in adapted.named_parameters():
        if param.requires_grad and ("up" in name):
            nn.init.normal_(param, std=0.1)
    adapted.eval()
    with torch.no_grad():
        changed = adapted(**inputs).last_hidden_state
    assert not torch.allclose(changed, expected, atol=1e-4)


def _grads_after_steps(model, inputs, steps=2):
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.1)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        model(**inputs).last_hidden_state.pow(2).mean().backward()
        grads = {
            name: None if p.grad is None else p.grad.clone()
            for name, p in model.named_parameters()
        }
        optimizer.step()
    return grads


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("checkpointing", [False, True])
def test_only_adapters_get_gradients(kind, checkpointing):
    model = _build(kind)
    freeze_and_adapt(model, _insertions(kind))
    if checkpointing:
        model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False}
        )
        assert model.is_gradient_checkpointing
    inputs = _inputs(kind)
    # Two steps: at the first, B = 0 blocks the gradient of A (and of the bottleneck's
    # down-projection); after one update every adapter parameter has a gradient.
    grads = _grads_after_steps(model, inputs)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(
        ("adapter" in n) or ("parametrizations" in n) for n in trainable
    )
    for name, grad in grads.items():
        if name in trainable:
            assert grad is not None and grad.abs().sum() > 0, name
        else:
            assert grad is None, name


def test_checkpointing_gives_the_same_gradients():
    inputs = _inputs("wav2vec2")
    grads = []
    for checkpointing in (False, True):
        model = _ssl("wav2vec2")
        freeze_and_adapt(model, _insertions("wav2vec2"))
        for module in model.modules():  # LoRA dropout off: same randomness not needed
            if isinstance(module, DropoutLoRA):
                module.adapter_dropout.p = 0.0
        if checkpointing:
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        grads.append(_grads_after_steps(model, inputs))
    for name, grad in grads[0].items():
        if grad is not None:
            torch.testing.assert_close(grads[1][name], grad, rtol=1e-4, atol=1e-6)


def test_parameter_counts_and_trainable_state_dict():
    model = _ssl("wav2vec2")
    total = sum(p.numel() for p in model.parameters())
    freeze_and_adapt(model, _insertions("wav2vec2"))
    hidden, layers = TINY_HUBERT_SETTINGS["hidden_size"], 2
    lora = layers * 2 * (2 * hidden * LORA["rank"])
    bottleneck = layers * (2 * hidden + 2 * hidden * 8 + 8 + hidden)
    head = nn.Linear(hidden, 3)
    report = log_parameter_counts({"encoder": model, "head": head})
    assert report["encoder"] == {"trainable": lora + bottleneck, "frozen": total}
    assert report["total"]["trainable"] == lora + bottleneck + 3 * hidden + 3
    state = trainable_state_dict(model)
    assert sum(t.numel() for t in state.values()) == lora + bottleneck
    assert parameter_counts(model, model) == report["encoder"]  # shared counted once


def test_insertion_errors():
    model = _ssl("hubert")
    with pytest.raises(ValueError, match="No module of HubertModel matches"):
        AdapterInsertion(DropoutLoRA, ["*attention.nothing"], rank=2)(model)
    with pytest.raises(ValueError, match="wraps a torch.nn.Linear"):
        AdaptedOutputLinear(nn.Conv1d(2, 2, 1))
