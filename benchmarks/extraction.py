"""Feature-extraction throughput per encoder, input mode and precision.

Runs the project's real extraction path (:func:`ser_lib.features.run_feature_extraction`:
audio read, batches sorted by length, float16 cache written) under float32 or bf16
autocast (:func:`precision_context`), each time into a fresh cache after one untimed
warm-up batch, and reports audio seconds per wall-clock second and per CPU second of
the process (the latter is less disturbed by other processes on a shared machine).
:func:`whisper_throughput` compares a Whisper encoder's ``pad30`` and ``native``
input modes on a corpus's wavs. Used by the benchmark and by
``tools/extraction_throughput.py``.

Authors
 * ser_lib contributors
"""

import csv
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ser_lib.features import FeatureCache, run_feature_extraction

WHISPER_MODES = ("pad30", "native")
"""Whisper input modes: every input padded to 30 s, or its own length."""

PRECISIONS = ("fp32", "bf16")
"""Extraction precisions: float32, or bf16 autocast on the extraction device."""

WARMUP_UTTERANCES = 2
"""Utterances of the untimed warm-up extraction before each timed one."""


def precision_context(precision, device):
    """The autocast context of an extraction precision (none for ``fp32``).

    Example
    -------
    >>> with precision_context("bf16", "cpu"):
    ...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
    torch.bfloat16
    """
    if precision == "fp32":
        return nullcontext()
    if precision != "bf16":
        raise ValueError(f"Unknown extraction precision {precision!r}: {PRECISIONS}")
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def wav_files(wav_folder):
    """The ``.wav`` files of a folder in name order (hidden files left out).

    Raises
    ------
    FileNotFoundError
        If there is none.
    """
    wavs = sorted(
        p for p in Path(wav_folder).glob("*.wav") if not p.name.startswith(".")
    )
    if not wavs:
        raise FileNotFoundError(f"No .wav file in {wav_folder}")
    return wavs


def wav_durations(wav_folder):
    """Seconds of every ``.wav`` of a folder (name order).

    Example
    -------
    >>> from benchmarks.synthetic import write_noise_corpus
    >>> _ = write_noise_corpus(getfixture("tmp_path"), [0.5, 1.0])
    >>> wav_durations(getfixture("tmp_path") / "wav")
    [0.5, 1.0]
    """
    return [sf.info(wav).duration for wav in wav_files(wav_folder)]


def write_subset_manifest(wav_folder, num_utterances, path):
    """A manifest (``ID, duration, wav``) of ``num_utterances`` wavs evenly spaced
    in name order.

    Returns
    -------
    tuple
        (IDs, total seconds of audio).

    Example
    -------
    >>> from benchmarks.synthetic import write_noise_corpus
    >>> tmp = getfixture("tmp_path")
    >>> _ = write_noise_corpus(tmp, [0.5, 1.0, 0.25])
    >>> write_subset_manifest(tmp / "wav", 2, tmp / "subset.csv")
    (['utt00000', 'utt00001'], 1.5)
    """
    wavs = wav_files(wav_folder)
    step = max(1, len(wavs) // num_utterances)
    chosen = wavs[::step][:num_utterances]
    durations = [sf.info(wav).duration for wav in chosen]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["ID", "duration", "wav"])
        for wav, duration in zip(chosen, durations, strict=True):
            writer.writerow([wav.stem, duration, str(wav)])
    return [wav.stem for wav in chosen], sum(durations)


def timed_extraction(encoder, manifest, cache_dir, precision, device, batch_seconds):
    """Times one extraction of ``manifest`` into ``cache_dir`` (after a warm-up).

    The warm-up extracts the manifest's first :data:`WARMUP_UTTERANCES` into
    ``<cache_dir>_warmup``.

    Returns
    -------
    tuple of float
        (wall seconds, CPU seconds of this process).
    """
    with open(manifest, encoding="utf-8") as f:
        head = "".join(f.readlines()[: 1 + WARMUP_UTTERANCES])
    warmup = Path(cache_dir).with_name(Path(cache_dir).name + "_warmup.csv")
    warmup.write_text(head, encoding="utf-8")
    with precision_context(precision, device):
        run_feature_extraction(
            encoder, warmup, str(cache_dir) + "_warmup", device=device, progress=False
        )
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        run_feature_extraction(
            encoder,
            manifest,
            cache_dir,
            batch_seconds=batch_seconds,
            device=device,
            progress=False,
        )
        wall = time.perf_counter() - wall_start
        cpu = time.process_time() - cpu_start
    return wall, cpu


def mean_cosine(cache_a, cache_b, ids):
    """Mean per-frame cosine similarity of two caches over ``ids``."""
    values = []
    for utt_id in ids:
        a = np.asarray(cache_a.load(utt_id), dtype=np.float32)
        b = np.asarray(cache_b.load(utt_id), dtype=np.float32)
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        values.append(np.sum(a * b, axis=1) / np.maximum(norms, 1e-12))
    return float(np.concatenate(values).mean())


def whisper_throughput(
    encoder_source,
    wav_folder,
    work_dir,
    num_utterances=60,
    modes=WHISPER_MODES,
    precisions=PRECISIONS,
    batch_seconds=60.0,
    device="cpu",
    layers=-1,
    log=None,
):
    """Whisper extraction throughput per input mode and precision on a corpus's wavs.

    Arguments
    ---------
    encoder_source : str
        Hub id or folder of the Whisper model.
    wav_folder : str or os.PathLike
        Folder of ``.wav`` files; ``num_utterances`` evenly spaced ones are used.
    work_dir : str or os.PathLike
        Receives the manifest and the caches.
    num_utterances : int
        Utterances extracted per configuration.
    modes : sequence of str
        Of :data:`WHISPER_MODES`.
    precisions : sequence of str
        Of :data:`PRECISIONS`.
    batch_seconds : float
        Padded audio per extraction batch (length-sorted batches).
    device : str
        Extraction device.
    layers : int or str
        ``WhisperEncoder`` layers (an index or ``"all"``).
    log : callable, optional
        Called with ``(name, row)`` after each configuration.

    Returns
    -------
    dict
        ``num_utterances``, ``audio_seconds``, ``rows`` (``<mode>_<precision>`` ->
        ``wall_s``, ``cpu_s``, ``audio_s_per_wall_s``, ``audio_s_per_cpu_s``),
        ``native_vs_pad30_<precision>`` and ``bf16_speedup_<mode>`` (``wall`` and
        ``cpu`` ratios) and ``bf16_vs_fp32_cosine_<mode>`` where both sides ran.
    """
    from ser_lib.encoders import WhisperEncoder

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    manifest = work_dir / "subset.csv"
    ids, audio_seconds = write_subset_manifest(wav_folder, num_utterances, manifest)
    results = {"num_utterances": len(ids), "audio_seconds": audio_seconds, "rows": {}}
    rows, caches = results["rows"], {}
    for mode in modes:
        encoder = WhisperEncoder(encoder_source, layers=layers, input_mode=mode)
        for precision in precisions:
            name = f"{mode}_{precision}"
            cache_dir = work_dir / name
            wall, cpu = timed_extraction(
                encoder, manifest, cache_dir, precision, device, batch_seconds
            )
            caches[name] = FeatureCache(cache_dir)
            rows[name] = {
                "wall_s": wall,
                "cpu_s": cpu,
                "audio_s_per_wall_s": audio_seconds / wall,
                "audio_s_per_cpu_s": audio_seconds / cpu,
            }
            if log is not None:
                log(name, rows[name])
    for precision in precisions:
        pad30, native = rows.get(f"pad30_{precision}"), rows.get(f"native_{precision}")
        if pad30 and native:
            results[f"native_vs_pad30_{precision}"] = {
                "wall": pad30["wall_s"] / native["wall_s"],
                "cpu": pad30["cpu_s"] / native["cpu_s"],
            }
    for mode in modes:
        fp32, bf16 = f"{mode}_fp32", f"{mode}_bf16"
        if fp32 in rows and bf16 in rows:
            results[f"bf16_speedup_{mode}"] = {
                "wall": rows[fp32]["wall_s"] / rows[bf16]["wall_s"],
                "cpu": rows[fp32]["cpu_s"] / rows[bf16]["cpu_s"],
            }
            results[f"bf16_vs_fp32_cosine_{mode}"] = mean_cosine(
                caches[fp32], caches[bf16], ids
            )
    return results
