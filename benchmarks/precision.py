"""float32 against bf16 autocast: training steps of both stages, side by side.

The stage-1 Brain (with the recipes' fused Adam) and the stage-2 Brain are built in
each precision with the same initial weights and timed in turns on one batch of
random features (each round runs every configuration once, so a change in the
machine's load hits all of them); the matmul peak is measured in both element types
in the same rounds. Used by the benchmark's ``precision`` task,
``tools/step_times.py`` and ``tools/device_check.sh``.

Authors
 * ser_lib contributors
"""

import dataclasses
from functools import partial

import torch

from benchmarks.config import BenchmarkSize
from benchmarks.measure import (
    matmul_peak,
    synchronize,
    time_calls,
    timing_summary,
)

PRECISIONS = ("fp32", "bf16")
"""The compared training precisions (SpeechBrain's ``--precision`` names)."""

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
"""Element type of the matmul peak of each precision."""


def sized(size, **changes):
    """A :class:`BenchmarkSize` dict with some settings changed.

    Example
    -------
    >>> from benchmarks.config import SIZES
    >>> sized(SIZES["tiny"], num_prototypes=8)["num_prototypes"]
    8
    """
    if isinstance(size, dict):
        size = BenchmarkSize(**size)
    return dataclasses.replace(size, **changes).as_dict()


def precision_steps(spec, input_dim, batch_utterances, frames, steps, warmup=1):
    """Median step seconds of both stages in fp32 and bf16, and the matmul peaks.

    Arguments
    ---------
    spec : dict
        ``size`` (a :class:`BenchmarkSize` dict: adapter, K, SAP heads, classes,
        ``matmul_size``, ``matmul_repeats``, ``seed``) and ``device``.
    input_dim : int
        Feature dimension of the cached encoder output.
    batch_utterances : int
        Utterances per batch.
    frames : int
        Frames per utterance (no padding).
    steps : int
        Timed steps of each configuration (the median counts).
    warmup : int
        Untimed steps first (the first one also counts the FLOPs).

    Returns
    -------
    dict
        ``stage1`` and ``stage2``: per precision the timing summary of the step
        (``median`` among others), ``flops`` of one step, ``bf16_speedup`` (fp32
        median / bf16 median); ``matmul_peak``: per precision the best FLOP/s;
        ``peak_share``: per stage and precision, the step's FLOP/s at its median
        against the peak of the same precision; ``kmeans``: the k-means update of
        the stage-1 batch's teacher frames with the step's assignment reused and
        re-computed (median seconds) and its share of the stage-1 step.

    Example
    -------
    >>> from benchmarks.config import SIZES
    >>> spec = {"size": SIZES["tiny"].as_dict(), "device": "cpu"}
    >>> out = precision_steps(spec, input_dim=8, batch_utterances=2, frames=6, steps=1)
    >>> sorted(out["stage1"]), out["stage1"]["bf16_speedup"] > 0
    (['bf16', 'bf16_speedup', 'flops', 'fp32'], True)
    """
    # Imported here: benchmarks.tasks imports this module for its task.
    from benchmarks.tasks import adapter_brain, feature_batch, finetune_brain, warm_up

    size = BenchmarkSize(**spec["size"])
    device = spec["device"]
    batch = feature_batch(batch_utterances, frames, input_dim, seed=size.seed)
    brains = {}
    for precision in PRECISIONS:
        precision_spec = {**spec, "precision": precision}
        torch.manual_seed(size.seed)  # the same initial weights in both precisions
        brains[("stage1", precision)] = adapter_brain(
            precision_spec, input_dim, tuned=True
        )
        torch.manual_seed(size.seed)
        brains[("stage2", precision)] = finetune_brain(precision_spec, input_dim)
    flops = {}
    for key, brain in brains.items():
        flops[key] = warm_up(brain, batch, warmup, device, warmup + steps)["flops"]
    times = {key: [] for key in brains}
    peaks = {precision: [] for precision in PRECISIONS}
    for _ in range(steps):
        for key, brain in brains.items():
            times[key] += time_calls(partial(brain.fit_batch, batch), 1, device)
        for precision in PRECISIONS:
            peak = matmul_peak(
                size.matmul_size, size.matmul_repeats, device, DTYPES[precision]
            )
            peaks[precision].append(peak["flop_per_s"])
    result = {"matmul_peak": {p: max(v) for p, v in peaks.items()}}
    result["peak_share"] = {}
    for stage in ("stage1", "stage2"):
        entry = {}
        for precision in PRECISIONS:
            entry[precision] = timing_summary(times[(stage, precision)])
        entry["flops"] = flops[(stage, "fp32")]
        entry["bf16_speedup"] = entry["fp32"]["median"] / entry["bf16"]["median"]
        result[stage] = entry
        result["peak_share"][stage] = {
            precision: entry["flops"]
            / entry[precision]["median"]
            / result["matmul_peak"][precision]
            for precision in PRECISIONS
        }
    result["kmeans"] = _kmeans_timings(brains[("stage1", "bf16")], batch, steps, device)
    for precision in PRECISIONS:
        result["kmeans"][f"share_of_{precision}_step"] = (
            result["kmeans"]["update_reused"] / result["stage1"][precision]["median"]
        )
    result["shape"] = {
        "input_dim": input_dim,
        "batch_utterances": batch_utterances,
        "frames": frames,
        "d_model": size.adapter["d_model"],
        "num_prototypes": size.num_prototypes,
    }
    return result


def _kmeans_timings(brain, batch, repeats, device):
    """Median seconds of the k-means update with the assignment reused / recomputed."""
    teacher = brain.modules.teacher
    with torch.no_grad():
        feats, lengths = batch.to(device).feats
        z = teacher(feats, lengths).reshape(-1, teacher.d_model).float()
    synchronize(device)
    attributes = brain.modules.local_attributes
    assignment = attributes.assign(z)
    reused = time_calls(
        lambda: attributes.update(z, assignment=assignment), repeats, device
    )
    recomputed = time_calls(lambda: attributes.update(z), repeats, device)
    return {
        "frames": z.shape[0],
        "update_reused": timing_summary(reused)["median"],
        "update_recomputed": timing_summary(recomputed)["median"],
    }
