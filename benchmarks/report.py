"""Writes the benchmark report: ``BENCHMARKS.md`` and ``benchmarks.json``.

The page is the header, then :data:`SECTIONS` in order (their text is in
:mod:`benchmarks.sections_training` and :mod:`benchmarks.sections_data`), then the
closing note; every figure comes from :func:`benchmarks.figures.derive`.

Authors
 * ser_lib contributors
"""

import json
import os
from pathlib import Path

from benchmarks.config import HUBERT_LARGE, BenchmarkSize
from benchmarks.figures import HEADLINE_NOTES, REQUIRED_FIGURES, derive, figure
from benchmarks.markdown import fmt
from benchmarks.sections_data import (
    extraction_section,
    padding_section,
    protocol_section,
    scaling_section,
)
from benchmarks.sections_training import (
    closing_note,
    efficiency_section,
    params_section,
    precision_section,
    steps_section,
    targets_section,
)

MD_FILE = "BENCHMARKS.md"
JSON_FILE = "benchmarks.json"


def _header(results, command):
    """Title, command, machine and method."""
    size = BenchmarkSize(**results["size"])
    machine = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    gpu = machine["gpu"]
    if gpu:
        device = (
            f"GPU {gpu['name']} ({gpu['memory_gib']:.0f} GiB, CUDA {gpu['cuda']}), "
            "bf16 autocast"
        )
    else:
        device = f"CPU only, {machine['torch_threads']} torch threads, float32"
    large = all(size.encoder.get(k) == v for k, v in HUBERT_LARGE.items())
    after = results.get("machine_after", {}).get("load_average")
    out = [
        "# Benchmarks: the cost of training on cached features",
        "",
        "Regenerate with:",
        "",
        f"    {command}",
        "",
        f"Measured {results['started']} in {results['seconds']:.0f} s (size "
        f"`{size.name}`) on {machine['cpu']} ({machine['cpu_count']} cores, "
        f"{fmt(machine['memory_gib'])} GiB RAM); {device}. {versions}. Commit "
        f"{machine['commit'] or 'unknown'}. Load average (1, 5, 15 min) at the "
        f"start {_loads(machine['load_average'])}, at the end {_loads(after)}: "
        "other jobs shared the machine, so times are noisy (each figure is the "
        "best of its timed steps; other work only ever adds time; every time is in "
        "`benchmarks.json`).",
        "",
        f"The encoder is {'HuBERT-large-sized' if large else 'a toy HuBERT'} "
        f"(`transformers.HubertConfig`: hidden {size.encoder['hidden_size']}, "
        f"{size.encoder['num_hidden_layers']} layers, "
        f"{size.encoder['num_attention_heads']} heads, intermediate "
        f"{size.encoder['intermediate_size']}, layer-norm feature extractor, "
        "pre-LN) with **random weights**, loaded through `HFEncoder` like a real "
        "checkpoint; time and memory do not depend on the weights. Inputs are white "
        "noise and random features of the same shapes. The adapter has width "
        f"{size.adapter['d_model']}, {size.adapter['num_layers']} blocks, "
        f"{size.adapter['nhead']} heads and K = {size.num_prototypes} local "
        "attributes, and trains through the project's own `AdapterBrain` and "
        "`FinetuneBrain`.",
        "",
    ]
    if not gpu:
        out += [
            "**No GPU run was possible**: this session had no GPU machine. On a "
            "machine with CUDA the same command measures the GPU (bf16 autocast, "
            "`torch.cuda.max_memory_allocated`), which gives the GPU table and the "
            "wall time of the paper protocol there.",
            "",
        ]
    return out


def _loads(values):
    """A load-average triple."""
    return "unknown" if not values else ", ".join(f"{v:.2f}" for v in values)


SECTIONS = (
    targets_section,
    steps_section,
    extraction_section,
    params_section,
    padding_section,
    efficiency_section,
    precision_section,
    scaling_section,
    protocol_section,
)
"""The sections of ``BENCHMARKS.md`` after the header, in order (the closing note
follows them); each maps (results, derived) to its lines."""


def render_markdown(results, derived, command):
    """The text of ``BENCHMARKS.md`` (without the closing note).

    Arguments
    ---------
    results : dict
        Raw results of :func:`benchmarks.suite.run_benchmark`.
    derived : dict
        :func:`benchmarks.figures.derive`'s output.
    command : str
        The command that regenerates the report.

    Returns
    -------
    str
    """
    out = _header(results, command)
    for section in SECTIONS:
        out += section(results, derived)
    return "\n".join(out)


def write_report(results, output_dir, command, notes=""):
    """Writes ``BENCHMARKS.md`` and ``benchmarks.json`` into ``output_dir``.

    Arguments
    ---------
    results : dict
        Raw results of :func:`benchmarks.suite.run_benchmark`.
    output_dir : str or os.PathLike
        Created if needed.
    command : str
        The command that regenerates the report (written into it).
    notes : str
        Markdown appended after the closing note.

    Returns
    -------
    tuple of pathlib.Path
        (markdown path, JSON path).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    derived = derive(results)
    for dotted in REQUIRED_FIGURES:
        figure(derived, dotted)  # raises KeyError if a figure is missing
    text = render_markdown(results, derived, command) + "\n" + closing_note(derived)
    if notes:
        text += "\n" + notes.strip() + "\n"
    # The headline figures under plain top-level keys, what each is next to them.
    document = {
        "command": command,
        **derived["headline"],
        "headline_notes": {
            **HEADLINE_NOTES,
            **{
                key: f"null: {reason}"
                for key, reason in derived["headline_reasons"].items()
            },
        },
        "results": results,
        "derived": derived,
    }
    paths = (output_dir / MD_FILE, output_dir / JSON_FILE)
    for path, content in zip(
        paths, (text, json.dumps(document, indent=2) + "\n"), strict=True
    ):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(content, encoding="utf-8")
        os.replace(tmp, path)
    return paths
