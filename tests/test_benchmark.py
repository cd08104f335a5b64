"""The benchmark suite: a tiny run writes a complete report; its measuring parts.

No timing assertions: the figures depend on the machine and its load.
"""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.config import SIZES
from benchmarks.figures import REQUIRED_FIGURES, figure
from benchmarks.measure import count_flops
from benchmarks.report import JSON_FILE, MD_FILE
from benchmarks.synthetic import iemocap_like_durations
from benchmarks.tasks import TASKS
from benchmarks.worker import run_in_subprocess
from ser_lib.models import WAPTransformer
from ser_lib.sampling import (
    bucketed_batch_sampler,
    padding_waste,
    quantile_bucket_boundaries,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import benchmark as benchmark_cli  # noqa: E402


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    """The tiny benchmark, every configuration in this process (fast)."""
    out = tmp_path_factory.mktemp("bench_out")
    work = tmp_path_factory.mktemp("bench_work")
    argv = ["--size", "tiny", "--in_process", "--output", str(out)]
    assert benchmark_cli.main(argv + ["--work_dir", str(work)]) == 0
    return out


def test_tiny_report_has_every_figure(tiny_report):
    document = json.loads((tiny_report / JSON_FILE).read_text())
    derived = document["derived"]
    for dotted in REQUIRED_FIGURES:
        value = figure(derived, dotted)
        if isinstance(value, float):
            assert math.isfinite(value), dotted
    assert len(derived["targets"]) == 5
    # The headline figures under plain top-level keys of benchmarks.json.
    for key in (
        "bf16_speedup_stage1",
        "bf16_speedup_stage2",
        "stage1_bf16_peak_share",
        "kmeans_share_of_step",
        "stage1_vs_encoder_in_loop",
    ):
        assert document[key] == derived["headline"][key] > 0, key
        assert key in document["headline_notes"], key
    precision = derived["precision"]
    assert document["bf16_speedup_stage1"] == (
        precision["stage1"]["fp32"]["median"] / precision["stage1"]["bf16"]["median"]
    )
    assert precision["matmul_peak"]["bf16"] > 0 and precision["matmul_peak"]["fp32"] > 0
    kmeans = precision["kmeans"]
    assert kmeans["frames"] == SIZES["tiny"].paper_batch * precision["shape"]["frames"]
    assert document["kmeans_share_of_step"] == (
        kmeans["update_reused"] / precision["stage1"]["bf16"]["median"]
    )
    # No Whisper encoder in the benchmark yet: a marked null, with the reason.
    assert document["whisper_native_vs_pad30"] is None
    assert "Whisper" in document["headline_notes"]["whisper_native_vs_pad30"]
    for target in derived["targets"]:
        assert isinstance(target["holds_now"], bool), target
        assert isinstance(target["holds_with_levers"], bool), target
    results = document["results"]
    assert set(results["tasks"]) == set(TASKS) - {"scaling"}
    assert [row["factor"] for row in results["scaling"]] == list(
        SIZES["tiny"].scaling_factors
    )
    assert results["machine"]["versions"]["torch"] == torch.__version__.split("+")[0]
    # The encoder's and the adapter's parameters are counted from the real modules.
    assert derived["params"]["adapter_sap_classifier"] > derived["params"]["adapter"]
    assert derived["params"]["full_finetune_trainable"] < (
        derived["params"]["encoder"] + derived["params"]["adapter_sap_classifier"]
    )


def test_tiny_report_markdown(tiny_report):
    text = (tiny_report / MD_FILE).read_text()
    assert "python tools/benchmark.py --size tiny --in_process --output" in text
    for heading in (
        "## Targets",
        "## a. Training steps and epochs",
        "## b. Feature extraction throughput",
        "## c. Trainable parameters",
        "## d. Padding waste",
        "## e. Achieved FLOP/s",
        "## g. bf16 autocast against float32",
        "## f. Scaling with corpus size",
        "## The paper protocol on this machine",
        "## Closing note",
    ):
        assert heading in text, heading
    if not torch.cuda.is_available():
        assert "No GPU run was possible" in text
    assert "nan" not in text.lower().split()


def test_worker_isolates_a_configuration(tmp_path):
    spec = {
        "size": SIZES["tiny"].as_dict(),
        "device": "cpu",
        "precision": "fp32",
        "feature_dim": 32,
        "step_frames": 20,
    }
    result = run_in_subprocess("stage1_cached", spec, tmp_path)
    assert result["isolated"] is True
    assert result["peak_rss_mib"] > 0
    assert result["flops"] > 0 and result["trainable_params"] > 0
    assert len(result["step_seconds"]["all"]) == SIZES["tiny"].cached_steps


def test_flop_count_matches_hand_count():
    model = WAPTransformer(
        input_dim=16, d_model=8, num_layers=2, nhead=2, mlp_ratio=4, mlp_layers=3
    )
    batch, time, d, hidden = 3, 10, 8, 32
    frames = batch * time
    linear = (
        2 * frames * (16 * d + 2 * (3 * d * d + d * d + 2 * d * hidden) + 3 * d * d)
    )
    attention = 2 * 2 * (2 * batch * 2 * time * time * (d // 2))  # 2 blocks, QK and AV
    flops = count_flops(lambda: model(torch.randn(batch, time, 16)))
    assert flops == linear + attention


def test_iemocap_like_durations():
    durations = iemocap_like_durations(5531, mean_seconds=4.5, max_seconds=35.0)
    assert durations.shape == (5531,)
    assert abs(durations.mean() - 4.5) < 0.05
    assert durations.max() == 35.0 and durations.min() > 0.3
    again = iemocap_like_durations(5531, seed=1)
    assert not np.array_equal(durations, again)
    assert np.array_equal(np.sort(durations), np.sort(again))


def test_bucketed_sampler_covers_every_example_and_reshuffles():
    lengths = np.round(iemocap_like_durations(500, seed=3) * 50).astype(int)
    budget = int(32 * lengths.mean())
    sampler = bucketed_batch_sampler(range(500), lengths, budget, num_buckets=8)
    first = [list(batch) for batch in sampler]
    assert sorted(i for batch in first for i in batch) == list(range(500))
    boundaries = quantile_bucket_boundaries(lengths, 8)
    for batch in first:
        bucket_max = min(b for b in boundaries if b >= max(lengths[batch]))
        assert len(batch) * bucket_max <= budget
    sampler.set_epoch(1)
    assert [list(batch) for batch in sampler] != first
    order = np.random.default_rng(0).permutation(500)
    random_batches = [order[i : i + 32] for i in range(0, 500, 32)]
    assert padding_waste(first, lengths) < padding_waste(random_batches, lengths) / 3


def test_bucketed_sampler_errors():
    with pytest.raises(ValueError, match="lengths"):
        bucketed_batch_sampler(range(3), [1, 2], batch_length=10)
    with pytest.raises(ValueError, match="longest"):
        bucketed_batch_sampler(range(2), [5, 50], batch_length=10)
    with pytest.raises(ValueError, match="num_buckets"):
        quantile_bucket_boundaries([1, 2], 0)


# The speed lever in the WAP-Transformer that the benchmark measures: computing the
# student's outputs at the masked frames only.


def _masked_setup(seed=0):
    torch.manual_seed(seed)
    model = WAPTransformer(input_dim=12, d_model=16, num_layers=3, nhead=4)
    x = torch.randn(3, 9, 12)
    lengths = torch.tensor([1.0, 5 / 9, 7 / 9])
    frame_mask = torch.rand(3, 9) < 0.4
    keep = torch.rand(3, 9) < 0.5
    keep[1] = False  # a row without any selected frame
    keep[0, 0] = keep[2, 8] = True  # keep[2, 8] is a padded frame: never output
    return model, x, lengths, frame_mask, keep


def test_wap_output_mask_matches_full_forward_and_gradients():
    model, x, lengths, frame_mask, keep = _masked_setup()
    model, x = model.double(), x.double()  # exact comparison, no float32 rounding
    selected = keep & (torch.arange(9) < torch.tensor([9, 5, 7]).unsqueeze(1))
    part = model(x, lengths, frame_mask=frame_mask, output_mask=keep)
    (part[selected] ** 2).sum().backward()
    grads_part = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    full = model(x, lengths, frame_mask=frame_mask)
    (full[selected] ** 2).sum().backward()
    torch.testing.assert_close(part[selected], full[selected])
    assert not part[~selected].any()
    for grad_part, param in zip(grads_part, model.parameters(), strict=True):
        torch.testing.assert_close(grad_part, param.grad)


def test_wap_output_mask_empty_stays_attached_and_saves_flops():
    model, x, lengths, frame_mask, keep = _masked_setup(1)
    empty = torch.zeros_like(keep)
    out = model(x, lengths, frame_mask=frame_mask, output_mask=empty)
    assert not out.any() and out.requires_grad
    out.sum().backward()  # still attached to the graph, as the losses expect
    full_flops = count_flops(lambda: model(x, lengths))
    part_flops = count_flops(lambda: model(x, lengths, output_mask=keep))
    assert part_flops < full_flops
    with pytest.raises(ValueError, match="output_mask"):
        model(x, lengths, output_mask=keep[:, :4])
