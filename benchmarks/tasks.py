"""The measurements, one function per configuration.

Every task takes a JSON-serialisable ``spec`` (the :class:`BenchmarkSize` as a dict
under ``size``, the ``device``, the ``precision`` and task-specific paths) and returns
a JSON-serialisable dict. :mod:`benchmarks.worker` runs each in a fresh
process so that its peak memory is its own.

Authors
 * ser_lib contributors
"""

import copy
import time
from functools import partial
from pathlib import Path

import speechbrain as sb
import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.dataio.dataloader import make_dataloader
from speechbrain.nnet.linear import Linear
from speechbrain.utils.checkpoints import Checkpointer
from speechbrain.utils.epoch_loop import EpochCounter

from benchmarks.baselines import (
    EncoderInLoopAdapterBrain,
    FullFinetuneBrain,
    StepTimedAdapterBrain,
)
from benchmarks.config import BenchmarkSize
from benchmarks.extraction import precision_context, whisper_throughput
from benchmarks.measure import (
    count_flops,
    matmul_peak,
    set_malloc_mmap_threshold,
    time_calls,
    timing_summary,
)
from benchmarks.precision import precision_steps
from benchmarks.protocol import task_protocol_epochs
from ser_lib.brains import AdapterBrain, FinetuneBrain
from ser_lib.dataio import build_label_encoder, feature_dataset
from ser_lib.encoders import HFEncoder
from ser_lib.features import FeatureCache, run_feature_extraction
from ser_lib.models import (
    LocalAttributes,
    StatisticalAttentivePooling,
    WAPTransformer,
    ema_update_,
    random_frame_mask,
)
from ser_lib.sampling import bucketed_batch_sampler, padding_waste
from ser_lib.schedules import CosineSchedule
from ser_lib.train_logger import JsonlTrainLogger

TRAINING = dict(
    lr=1e-4,
    mask_ratio=0.4,
    mask_span=1,
    tau=0.1,
    pce_logits="cosine",
    ema_alpha=0.999,
    lambda_start=1.0,
    lambda_end=0.5,
    augment_mask_fraction=0.2,
    epochs=100,
    sync_interval=25,
    lr_scales={},
)
"""The recipes' training settings (hparams/adapter.yaml, hparams/finetune.yaml)."""

TUNED_ADAM = {"fused": True}
"""Adam options of the tuned stage-1 configuration (one fused update of all
parameters instead of one tensor at a time)."""

CLASSES = ["neu", "hap", "ang", "sad"]
"""Labels of the synthetic batches."""


def _size(spec):
    """The :class:`BenchmarkSize` of a spec."""
    return BenchmarkSize(**spec["size"])


def _run_opts(spec):
    """Brain run options: device and precision (bf16 autocast on GPU)."""
    return {"device": spec["device"], "precision": spec["precision"]}


def _param_count(*modules, trainable_only=False):
    """Number of parameters of the modules (trainable ones only if asked)."""
    return sum(
        p.numel()
        for module in modules
        for p in module.parameters()
        if p.requires_grad or not trainable_only
    )


def _adapter(size, input_dim):
    """A WAP-Transformer of the benchmark size."""
    return WAPTransformer(
        input_dim=input_dim, max_frames=size.max_frames, **size.adapter
    )


def _schedules(epochs):
    """Learning-rate and λ schedules and the epoch counter of the recipes."""
    return dict(
        lr_schedule=CosineSchedule(TRAINING["lr"], 0.0),
        lambda_schedule=CosineSchedule(
            TRAINING["lambda_start"], TRAINING["lambda_end"]
        ),
        epoch_counter=EpochCounter(epochs),
    )


def adapter_brain(
    spec, input_dim, brain_class=AdapterBrain, extra_modules=None, tuned=False, **kw
):
    """A stage-1 Brain (student, teacher, local attributes) of the benchmark size.

    ``tuned`` uses the fused Adam the recipes set (one update of all parameters);
    otherwise PyTorch's default Adam. Either way the Brain computes the student's
    outputs at its masked frames only.

    Arguments
    ---------
    spec : dict
        Task spec (``size``, ``device``, ``precision``).
    input_dim : int
        Feature dimension.
    brain_class : type
        :class:`AdapterBrain` or a subclass.
    extra_modules : dict, optional
        More modules (e.g. the encoder).
    tuned : bool
        Apply the speed levers.
    **kw
        Passed to the Brain (``checkpointer``) or added to the hparams.

    Returns
    -------
    AdapterBrain

    Example
    -------
    >>> from benchmarks.config import SIZES
    >>> spec = {"size": SIZES["tiny"].as_dict(), "device": "cpu", "precision": "fp32"}
    >>> brain = adapter_brain(spec, input_dim=32)
    >>> sorted(brain.modules.keys())
    ['local_attributes', 'student', 'teacher']
    """
    size = _size(spec)
    student = _adapter(size, input_dim)
    modules = {
        "student": student,
        "teacher": copy.deepcopy(student),
        "local_attributes": LocalAttributes(
            num_prototypes=size.num_prototypes, dim=size.adapter["d_model"]
        ),
        **(extra_modules or {}),
    }
    checkpointer = kw.pop("checkpointer", None)
    hparams = {
        key: TRAINING[key]
        for key in (
            "mask_ratio",
            "mask_span",
            "tau",
            "pce_logits",
            "ema_alpha",
            "sync_interval",
            "lr_scales",
        )
    }
    hparams.update(_schedules(kw.pop("epochs", TRAINING["epochs"])))
    hparams.update(kw)
    adam_options = TUNED_ADAM if tuned else {}
    return brain_class(
        modules=modules,
        opt_class=partial(torch.optim.Adam, lr=TRAINING["lr"], **adam_options),
        hparams=hparams,
        run_opts=_run_opts(spec),
        checkpointer=checkpointer,
    )


def stage2_head(size, input_dim):
    """The stage-2 modules: WAP-Transformer backbone, SAP and linear classifier.

    Example
    -------
    >>> from benchmarks.config import SIZES
    >>> head = stage2_head(SIZES["tiny"], input_dim=32)
    >>> sorted(head)
    ['backbone', 'classifier', 'sap']
    """
    backbone = _adapter(size, input_dim)
    sap = StatisticalAttentivePooling(
        input_dim=size.adapter["d_model"], num_heads=size.sap_heads
    )
    classifier = Linear(input_size=sap.output_dim, n_neurons=size.num_classes)
    return {"backbone": backbone, "sap": sap, "classifier": classifier}


def finetune_brain(spec, input_dim, **kw):
    """A stage-2 Brain (backbone from random initialisation) of the benchmark size.

    ``kw``: ``checkpointer``, ``epochs``, or more hparams (as :func:`adapter_brain`).
    """
    size = _size(spec)
    checkpointer = kw.pop("checkpointer", None)
    hparams = {
        "backbone_init": "random",
        "freeze_backbone": False,
        "augment_mask_fraction": TRAINING["augment_mask_fraction"],
        "sync_interval": TRAINING["sync_interval"],
        "lr_scales": TRAINING["lr_scales"],
        **_schedules(kw.pop("epochs", TRAINING["epochs"])),
        **kw,
    }
    return FinetuneBrain(
        modules=stage2_head(size, input_dim),
        opt_class=partial(torch.optim.Adam, lr=TRAINING["lr"]),
        hparams=hparams,
        run_opts=_run_opts(spec),
        checkpointer=checkpointer,
    )


def feature_batch(num_utterances, num_frames, feature_dim, seed=0):
    """A batch of random features, all ``num_frames`` long (no padding).

    Example
    -------
    >>> batch = feature_batch(2, 5, 3)
    >>> batch.feats.data.shape, batch.emo_encoded.data.view(-1).tolist()
    (torch.Size([2, 5, 3]), [0, 1])
    """
    return padded_feature_batch([num_frames] * num_utterances, feature_dim, seed)


def padded_feature_batch(frames, feature_dim, seed=0):
    """A batch of random features of the given lengths (padded to the longest).

    Example
    -------
    >>> batch = padded_feature_batch([3, 5], 2)
    >>> batch.feats.data.shape, batch.feats.lengths.tolist()
    (torch.Size([2, 5, 2]), [0.6000000238418579, 1.0])
    """
    generator = torch.Generator().manual_seed(seed)
    return PaddedBatch(
        [
            {
                "id": f"utt{i}",
                "feats": torch.randn(int(n), feature_dim, generator=generator),
                "emo_encoded": torch.tensor([i % len(CLASSES)]),
                "augment": 0,
            }
            for i, n in enumerate(frames)
        ]
    )


def wav_batch(num_utterances, num_samples, seed=0):
    """A batch of white-noise waveforms, all ``num_samples`` long (no padding).

    Example
    -------
    >>> wav_batch(2, 160).sig.data.shape
    torch.Size([2, 160])
    """
    generator = torch.Generator().manual_seed(seed)
    return PaddedBatch(
        [
            {
                "id": f"utt{i}",
                "sig": 0.1 * torch.randn(num_samples, generator=generator),
                "emo_encoded": torch.tensor([i % len(CLASSES)]),
            }
            for i in range(num_utterances)
        ]
    )


def _start_training(brain, steps_per_epoch):
    """What ``Brain.fit`` does before the first batch."""
    brain.steps_per_epoch = steps_per_epoch
    brain.on_fit_start()
    brain.modules.train()
    brain.on_stage_start(sb.Stage.TRAIN, 1)


def warm_up(brain, batch, warmup, device, steps_per_epoch):
    """Starts training and runs the untimed steps; the first one counts the FLOPs.

    Arguments
    ---------
    brain : sb.Brain
        The Brain.
    batch : PaddedBatch or FeatureBatch
        The batch.
    warmup : int
        Untimed steps (>= 1).
    device : str
        For synchronisation.
    steps_per_epoch : int
        Steps the schedules assume per epoch.

    Returns
    -------
    dict
        ``flops`` (of one step) and ``warmup_seconds``.
    """
    _start_training(brain, steps_per_epoch=steps_per_epoch)
    start = time.perf_counter()
    flops = count_flops(lambda: brain.fit_batch(batch))
    warmup_seconds = [time.perf_counter() - start]
    warmup_seconds += time_calls(lambda: brain.fit_batch(batch), warmup - 1, device)
    return {"flops": flops, "warmup_seconds": warmup_seconds}


def time_training_steps(brain, batch, warmup, repeats, device):
    """Times ``brain.fit_batch(batch)`` after :func:`warm_up`.

    Arguments
    ---------
    brain : sb.Brain
        Ready to train (optimisers built).
    batch : PaddedBatch or FeatureBatch
        The batch, used for every step.
    warmup : int
        Untimed steps (>= 1).
    repeats : int
        Timed steps.
    device : str
        For synchronisation.

    Returns
    -------
    dict
        ``step_seconds`` (timing summary), ``flops`` (of one step),
        ``warmup_seconds``.
    """
    result = warm_up(brain, batch, warmup, device, steps_per_epoch=warmup + repeats)
    times = time_calls(lambda: brain.fit_batch(batch), repeats, device)
    result["step_seconds"] = timing_summary(times)
    return result


def _hf_encoder(spec):
    """The random HuBERT saved by the suite, loaded like a real checkpoint."""
    return HFEncoder(spec["encoder_dir"])


def _step_shape(spec):
    """(utterances, samples, frames) of the fixed comparison batch."""
    size = _size(spec)
    return (
        size.step_utterances,
        int(round(size.step_seconds * size.sample_rate)),
        spec["step_frames"],
    )


def task_extraction(spec):
    """Feature-extraction throughput of the encoder, length-sorted batches.

    Spec: ``encoder_dir``, ``csv`` (noise corpus), ``data_root``, ``cache_dir``,
    optionally ``extraction_precision`` (``fp32``, the default, or ``bf16``
    autocast; see :func:`benchmarks.extraction.precision_context`).
    Also returns the encoder's parameter count and the frames of one utterance of
    the fixed comparison batch (``step_frames``).
    """
    size = _size(spec)
    start = time.perf_counter()
    encoder = _hf_encoder(spec)
    load_seconds = time.perf_counter() - start
    precision = spec.get("extraction_precision", "fp32")
    with precision_context(precision, spec["device"]):
        summary = run_feature_extraction(
            encoder,
            spec["csv"],
            spec["cache_dir"],
            data_root=spec["data_root"],
            batch_seconds=size.extraction_batch_seconds,
            device=spec["device"],
            progress=False,
        )
    cache = FeatureCache(spec["cache_dir"])
    audio_seconds = sum(cache.num_frames(i) for i in cache.ids) / encoder.frame_rate
    return {
        "precision": precision,
        "audio_seconds": audio_seconds,
        "utterances": summary.num_extracted,
        "seconds": summary.seconds,
        "audio_seconds_per_second": audio_seconds / summary.seconds,
        "encoder_load_seconds": load_seconds,
        "encoder_params": _param_count(encoder),
        "feature_dim": encoder.output_dim,
        "step_frames": encoder.num_frames(
            int(round(size.step_seconds * size.sample_rate))
        ),
    }


def _cached_steps(spec, brain, trainable):
    """Times ``brain`` on the fixed comparison batch of cached features."""
    size = _size(spec)
    num, _, frames = _step_shape(spec)
    batch = feature_batch(num, frames, spec["feature_dim"], seed=size.seed)
    result = time_training_steps(
        brain, batch, size.warmup_steps, size.cached_steps, spec["device"]
    )
    result["trainable_params"] = _param_count(trainable, trainable_only=True)
    return result


def task_stage1_cached(spec):
    """Stage-1 steps on cached features (the fixed comparison batch)."""
    brain = adapter_brain(spec, spec["feature_dim"])
    return _cached_steps(spec, brain, brain.modules.student)


def task_stage1_cached_tuned(spec):
    """Stage-1 steps on cached features with the speed levers (same batch)."""
    brain = adapter_brain(spec, spec["feature_dim"], tuned=True)
    return _cached_steps(spec, brain, brain.modules.student)


def task_stage2_cached(spec):
    """Stage-2 steps on cached features (the fixed comparison batch)."""
    brain = finetune_brain(spec, spec["feature_dim"])
    return _cached_steps(spec, brain, brain.modules)


def task_stage1_encoder_loop(spec):
    """Stage-1 steps with the frozen encoder run at every step (same batch)."""
    size = _size(spec)
    num, samples, _ = _step_shape(spec)
    encoder = _hf_encoder(spec)
    brain = adapter_brain(
        spec,
        encoder.output_dim,
        brain_class=EncoderInLoopAdapterBrain,
        extra_modules={"encoder": encoder},
    )
    batch = wav_batch(num, samples, seed=size.seed)
    result = time_training_steps(
        brain, batch, size.warmup_steps, size.encoder_steps, spec["device"]
    )
    timed = brain.encoder_seconds[size.warmup_steps :]
    result["encoder_forward_seconds"] = timing_summary(timed)
    return result


def task_full_finetune(spec):
    """Full fine-tuning steps: encoder forward and backward plus the stage-2 head."""
    size = _size(spec)
    num, samples, _ = _step_shape(spec)
    hf_encoder = _hf_encoder(spec)
    model = hf_encoder.model
    model.requires_grad_(True)
    # SpeechBrain's recipes keep the convolutional feature extractor frozen.
    model.feature_extractor._freeze_parameters()
    modules = {"encoder": model, **stage2_head(size, hf_encoder.output_dim)}
    brain = FullFinetuneBrain(
        modules=modules,
        opt_class=partial(torch.optim.Adam, lr=TRAINING["lr"]),
        hparams={"hf_encoder": hf_encoder},
        run_opts=_run_opts(spec),
    )
    batch = wav_batch(num, samples, seed=size.seed)
    result = time_training_steps(
        brain, batch, size.warmup_steps, size.encoder_steps, spec["device"]
    )
    result["trainable_params"] = _param_count(brain.modules, trainable_only=True)
    return result


def _lever_timings(brain, batch, size, device):
    """Side-by-side timings of the parts of a stage-1 step that have a faster form.

    Student forward and backward with the outputs of every frame or only of the
    masked ones (``output_mask``: all that the stage-1 losses read); teacher
    forward under ``no_grad`` (as in AdapterBrain) and ``inference_mode``;
    the EMA update as :func:`ema_update_` (one tensor at a time) and as one
    ``torch._foreach_lerp_``; Adam single-tensor (torch's CPU default), ``foreach``
    and ``fused``; the nearest-prototype assignment (AdapterBrain runs it twice per
    step on the same frames and prototypes: for the pseudo-labels and inside the
    k-means update) and the k-means update of the local attributes.
    """
    repeats = size.efficiency_steps
    feats, lengths = batch.feats
    feats, lengths = feats.to(device), lengths.to(device)
    teacher, student = brain.modules.teacher, brain.modules.student

    def teacher_forward(context):
        with context():
            teacher(feats, lengths)

    mask = random_frame_mask(
        lengths, feats.shape[1], TRAINING["mask_ratio"], span=TRAINING["mask_span"]
    ).to(device)

    def student_step(output_mask):
        z = student(feats, lengths, frame_mask=mask, output_mask=output_mask)
        z[mask].square().sum().backward()  # the grads accumulate: fine for timing

    def ema_foreach():
        with torch.no_grad():
            torch._foreach_lerp_(
                teacher_params, student_params, 1.0 - TRAINING["ema_alpha"]
            )

    teacher_params = list(teacher.parameters())
    student_params = [p.detach() for p in student.parameters()]
    pairs = (
        ("student_all_frames", partial(student_step, None)),
        ("student_masked_frames", partial(student_step, mask)),
        ("teacher_no_grad", partial(teacher_forward, torch.no_grad)),
        ("teacher_inference_mode", partial(teacher_forward, torch.inference_mode)),
        (
            "ema_per_tensor",
            partial(ema_update_, teacher, student, TRAINING["ema_alpha"]),
        ),
        ("ema_foreach", ema_foreach),
    )
    params = [p for p in student.parameters() if p.requires_grad]
    for param in params:
        param.grad = torch.randn_like(param)
    for name, options in (
        ("adam_single_tensor", {"foreach": False}),
        ("adam_foreach", {"foreach": True}),
        ("adam_fused", {"fused": True}),
    ):
        optimizer = torch.optim.Adam(params, lr=TRAINING["lr"], **options)
        optimizer.step()  # creates the state
        pairs += ((name, optimizer.step),)
    timings = {name: [] for name, _ in pairs}
    for _ in range(repeats):  # interleaved, so that load changes hit every form
        for name, fn in pairs:
            with brain.training_ctx:  # the steps' precision (bf16 autocast on GPU)
                timings[name] += time_calls(fn, 1, device)
    with torch.no_grad():
        z = teacher(feats, lengths).reshape(-1, teacher.d_model)  # no padding
    attributes = brain.modules.local_attributes
    timings["kmeans_assign"] = time_calls(lambda: attributes.assign(z), repeats, device)
    timings["kmeans_update"] = time_calls(lambda: attributes.update(z), repeats, device)
    # As the Brain runs it: the eqn-4 assignment of the pseudo-labels is reused.
    assignment = attributes.assign(z)
    timings["kmeans_update_reused"] = time_calls(
        lambda: attributes.update(z, assignment=assignment), repeats, device
    )
    return {name: timing_summary(times) for name, times in timings.items()}


def task_efficiency(spec):
    """Stage-1 and stage-2 steps at the paper's batch: FLOP/s against matmul peak.

    The batch holds ``paper_batch`` utterances of the mean duration (no padding).
    Stage 1 as the recipe runs it, stage 1 with the speed levers, stage 2 and the
    matmul are timed in turns (each round runs each once), so that a change in the
    machine's load hits all of them; the best of the rounds counts. Also times
    the parts of the stage-1 step that have faster forms.
    """
    size = _size(spec)
    device = spec["device"]
    dtype = torch.bfloat16 if spec["precision"] == "bf16" else torch.float32
    frames = min(int(round(size.mean_seconds * size.frame_rate)), size.max_frames)
    batch = feature_batch(size.paper_batch, frames, spec["feature_dim"], size.seed)
    brains = {
        "stage1": adapter_brain(spec, spec["feature_dim"]),
        "stage1_tuned": adapter_brain(spec, spec["feature_dim"], tuned=True),
        "stage2": finetune_brain(spec, spec["feature_dim"]),
    }
    steps = size.warmup_steps + size.efficiency_steps
    result = {
        name: warm_up(b, batch, size.warmup_steps, device, steps)
        for name, b in brains.items()
    }
    times = {name: [] for name in brains}
    peaks = [matmul_peak(size.matmul_size, size.matmul_repeats, device, dtype)]
    for _ in range(size.efficiency_steps):
        for name, brain in brains.items():
            times[name] += time_calls(partial(brain.fit_batch, batch), 1, device)
        peaks.append(matmul_peak(size.matmul_size, size.matmul_repeats, device, dtype))
    peak = max(peaks, key=lambda p: p["flop_per_s"])
    peak["rounds_flop_per_s"] = [p["flop_per_s"] for p in peaks]
    for name, entry in result.items():
        entry["step_seconds"] = timing_summary(times[name])
        entry["flop_per_s"] = entry["flops"] / entry["step_seconds"]["best"]
        entry["fraction_of_peak"] = entry["flop_per_s"] / peak["flop_per_s"]
    result["matmul_peak"] = peak
    result["batch_utterances"] = size.paper_batch
    result["frames"] = frames
    result["levers"] = _lever_timings(brains["stage1"], batch, size, device)
    return result


def task_precision(spec):
    """Both stages' steps at the paper's batch in fp32 and bf16, side by side.

    Also the bf16 and fp32 matmul peaks (same process, same rounds), the k-means
    update with the step's assignment reused, and the frozen encoder's forward
    under bf16 autocast on the fixed comparison batch (per frame), for the ratio
    of stage 1 against the encoder in the loop with both sides in bf16.
    """
    size = _size(spec)
    device = spec["device"]
    frames = min(int(round(size.mean_seconds * size.frame_rate)), size.max_frames)
    result = precision_steps(
        spec,
        spec["feature_dim"],
        size.paper_batch,
        frames,
        steps=size.efficiency_steps,
        warmup=size.warmup_steps,
    )
    num, samples, step_frames = _step_shape(spec)
    encoder = _hf_encoder(spec).to(device).eval()
    wavs, wav_lens = wav_batch(num, samples, seed=size.seed).to(device).sig
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16)

    def forward():
        with torch.no_grad(), autocast:
            encoder(wavs, wav_lens)

    forward()  # untimed
    seconds = timing_summary(time_calls(forward, size.encoder_steps, device))
    encoder_per_frame = seconds["median"] / (num * step_frames)
    stage1_per_frame = result["stage1"]["bf16"]["median"] / (size.paper_batch * frames)
    result["encoder_forward_bf16"] = {
        "seconds": seconds,
        "frames": num * step_frames,
        "seconds_per_frame": encoder_per_frame,
    }
    result["stage1_vs_encoder_in_loop_bf16"] = (
        encoder_per_frame + stage1_per_frame
    ) / stage1_per_frame
    return result


def bucketed_training_set(csv_path, cache, size, batch_utterances, num_buckets):
    """The training set of a cached manifest and its bucketed batch sampler.

    Utterances are randomly cropped to ``size.max_frames``; a batch holds about
    ``batch_utterances`` utterances of the mean duration.

    Returns
    -------
    tuple
        (dataset, cropped lengths in frames, batch sampler).
    """
    dataset = feature_dataset(
        csv_path,
        cache,
        build_label_encoder(CLASSES),
        max_frames=size.max_frames,
        random_crop=True,
    )
    lengths = [
        min(cache.num_frames(dataset.data[i]["source_id"]), size.max_frames)
        for i in dataset.data_ids
    ]
    mean_frames = int(round(size.mean_seconds * size.frame_rate))
    sampler = bucketed_batch_sampler(
        dataset,
        lengths,
        batch_length=max(batch_utterances * mean_frames, max(lengths)),
        num_buckets=num_buckets,
        seed=size.seed,
    )
    return dataset, lengths, sampler


def task_scaling(spec):
    """One stage-1 epoch on a memory-mapped cache, with bucketed batches.

    Spec: ``csv`` (the training manifest of this corpus size), ``cache_dir``,
    ``work_dir`` (checkpoints and logs), ``malloc_mmap_threshold`` (bytes, or
    None to keep glibc's default; see :func:`set_malloc_mmap_threshold`).
    """
    size = _size(spec)
    threshold_set = False
    if spec["malloc_mmap_threshold"] is not None:
        threshold_set = set_malloc_mmap_threshold(spec["malloc_mmap_threshold"])
    cache = FeatureCache(spec["cache_dir"])
    dataset, lengths, sampler = bucketed_training_set(
        spec["csv"], cache, size, size.scaling_batch, size.scaling_buckets
    )
    work_dir = Path(spec["work_dir"])
    brain = adapter_brain(
        spec,
        cache.feature_dim,
        brain_class=StepTimedAdapterBrain,
        epochs=1,
        checkpointer=Checkpointer(work_dir / "save"),
        checkpoints_to_keep=1,
        train_logger=JsonlTrainLogger(
            str(work_dir / "train_log.txt"), str(work_dir / "train_log.jsonl")
        ),
    )
    brain.train_sampler = sampler  # so that Brain.fit calls its set_epoch
    loader = make_dataloader(dataset, batch_sampler=sampler)
    waste = padding_waste(list(sampler), lengths)
    start = time.perf_counter()
    brain.fit(brain.hparams.epoch_counter, loader, progressbar=False)
    seconds = time.perf_counter() - start
    steady = brain.step_records[1:] or brain.step_records  # the first step warms up
    return {
        "utterances": len(dataset),
        "valid_frames": sum(lengths),
        "steps": len(loader),
        "malloc_mmap_threshold_set": threshold_set,
        "padding_waste": waste,
        "epoch_seconds": seconds,
        "steady_ms_per_padded_frame": 1000.0
        * sum(r["seconds"] for r in steady)
        / sum(r["padded_frames"] for r in steady),
        "step_records": brain.step_records,
        "cache_mib": sum(
            cache.feature_path(dataset.data[i]["source_id"]).stat().st_size
            for i in dataset.data_ids
        )
        / 1024**2,
    }


def task_whisper_extraction(spec):
    """Whisper ``pad30`` against ``native`` extraction, fp32 and bf16, on real wavs.

    Spec: ``whisper_source`` (model folder), ``wav_folder``, ``work_dir``; see
    :func:`benchmarks.extraction.whisper_throughput`.
    """
    size = _size(spec)
    return whisper_throughput(
        spec["whisper_source"],
        spec["wav_folder"],
        spec["work_dir"],
        num_utterances=size.whisper_utterances,
        batch_seconds=size.whisper_batch_seconds,
        device=spec["device"],
    )


TASKS = {
    "extraction": task_extraction,
    "whisper_extraction": task_whisper_extraction,
    "protocol_epochs": task_protocol_epochs,
    "stage1_cached": task_stage1_cached,
    "stage1_cached_tuned": task_stage1_cached_tuned,
    "stage2_cached": task_stage2_cached,
    "stage1_encoder_loop": task_stage1_encoder_loop,
    "full_finetune": task_full_finetune,
    "efficiency": task_efficiency,
    "precision": task_precision,
    "scaling": task_scaling,
}
"""Task name (the worker's command-line argument) -> function."""
