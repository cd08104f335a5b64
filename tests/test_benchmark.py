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
from benchmarks.report import JSON_FILE, MD_FILE, write_report
from benchmarks.synthetic import iemocap_like_durations, write_noise_corpus
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
from conftest import save_tiny_whisper  # noqa: E402

EMODB_LIKE_SECONDS = [0.6, 1.4, 0.9, 2.1, 1.2]
"""Durations of the noise wavs standing in for EmoDB's."""


@pytest.fixture(scope="module")
def real_material(tmp_path_factory):
    """A tiny random Whisper and a folder of noise wavs (for the real-data parts)."""
    whisper = save_tiny_whisper(tmp_path_factory.mktemp("tiny_whisper"))
    corpus = tmp_path_factory.mktemp("emodb_like")
    write_noise_corpus(corpus, EMODB_LIKE_SECONDS)
    return whisper, corpus / "wav"


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory, real_material):
    """The tiny benchmark, every configuration in this process (fast), with the
    Whisper extraction and the EmoDB protocol on stand-in material."""
    out = tmp_path_factory.mktemp("bench_out")
    work = tmp_path_factory.mktemp("bench_work")
    whisper, wavs = real_material
    argv = ["--size", "tiny", "--in_process", "--output", str(out)]
    argv += ["--whisper_source", str(whisper), "--emodb_wav_folder", str(wavs)]
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
    # Whisper pad30 against native, both precisions, on the given wavs.
    whisper = derived["whisper"]
    assert sorted(whisper["rows"]) == [
        "native_bf16",
        "native_fp32",
        "pad30_bf16",
        "pad30_fp32",
    ]
    assert whisper["num_utterances"] == SIZES["tiny"].whisper_utterances
    assert document["whisper_native_vs_pad30"] == (
        whisper["rows"]["pad30_fp32"]["wall_s"]
        / whisper["rows"]["native_fp32"]["wall_s"]
    )
    assert -1.0 <= whisper["bf16_vs_fp32_cosine_native"] <= 1.0
    # The EmoDB protocol: measured epochs x epochs x folds + extraction.
    protocol = derived["emodb_protocol"]
    epochs = protocol["epochs"]
    assert protocol["folds"] == 5 and protocol["epochs_per_stage"] == {
        "stage1": 15,
        "stage2": 15,
    }  # recipes/EmoDB/hparams/whisper_base_cpu.yaml
    assert epochs["utterances"] == 4  # a training fold's share of the 5 wavs
    assert epochs["stage1"]["precision"] == "bf16"  # the config's explicit value
    assert epochs["stage1"]["timed_steps"] == SIZES["tiny"].protocol_epoch_steps
    extraction_seconds = (
        sum(EMODB_LIKE_SECONDS) / (whisper["rows"]["native_fp32"]["audio_s_per_wall_s"])
    )
    assert protocol["extrapolated_seconds"] == pytest.approx(
        extraction_seconds
        + 5
        * 15
        * (epochs["stage1"]["epoch_seconds"] + epochs["stage2"]["epoch_seconds"])
    )
    # As run: read from the results file of the repository.
    assert protocol["as_run"]["row"] == "wap_la_teacher"
    assert protocol["as_run"]["total"] == pytest.approx(
        protocol["as_run"]["stage1"] + protocol["as_run"]["stage2"]
    )
    # The HuBERT-sized extraction in both precisions.
    extraction = derived["extraction_precision"]
    assert extraction["bf16_speedup"] == extraction["bf16"] / extraction["fp32"]
    assert document["results"]["tasks"]["extraction_bf16"]["precision"] == "bf16"
    for target in derived["targets"]:
        assert isinstance(target["holds_now"], bool), target
        assert isinstance(target["holds_with_levers"], bool), target
    results = document["results"]
    assert set(results["tasks"]) == (set(TASKS) - {"scaling", "protocol_epochs"}) | {
        "extraction_bf16"
    }
    assert [row["factor"] for row in results["scaling"]] == list(
        SIZES["tiny"].scaling_factors
    )
    assert results["machine"]["versions"]["torch"] == torch.__version__.split("+")[0]
    # The encoder's and the adapter's parameters are counted from the real modules.
    assert derived["params"]["adapter_sap_classifier"] > derived["params"]["adapter"]
    assert derived["params"]["full_finetune_trainable"] < (
        derived["params"]["encoder"] + derived["params"]["adapter_sap_classifier"]
    )


def test_missing_material_gives_null_and_the_reason(tiny_report, tmp_path):
    results = json.loads((tiny_report / JSON_FILE).read_text())["results"]
    results["tasks"]["whisper_extraction"] = {"reason": "no Whisper model given"}
    results["emodb_protocol"].update(
        epochs=None, extraction_audio_s_per_s=None, reason="no EmoDB wav folder"
    )
    write_report(results, tmp_path, "python tools/benchmark.py --size tiny")
    document = json.loads((tmp_path / JSON_FILE).read_text())
    assert document["whisper_native_vs_pad30"] is None
    assert document["headline_notes"]["whisper_native_vs_pad30"] == (
        "null: no Whisper model given"
    )
    assert document["derived"]["emodb_protocol"]["extrapolated_seconds"] is None
    text = (tmp_path / MD_FILE).read_text()
    assert "**not measured** (no Whisper model given)" in text
    assert "extrapolation **not available** (no EmoDB wav folder)" in text
    assert "As actually run: row `wap_la_teacher`" in text


def test_tiny_report_markdown(tiny_report):
    text = (tiny_report / MD_FILE).read_text()
    assert (
        "python tools/benchmark.py --size tiny --in_process --whisper_source " in text
    )
    # The real material's paths stay out of the report.
    assert "--whisper_source WHISPER_BASE_DIR --emodb_wav_folder EMODB_WAV_DIR" in text
    assert "on 2 utterances of `--emodb_wav_folder`" in text
    assert "Real-data EmoDB protocol at the size of" in text
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
