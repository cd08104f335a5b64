"""``precision: auto``: the training precision picked per device when a stage starts.

The rule (from the benchmark, docs/BENCHMARKS.md):

- CUDA with bf16 support -> ``bf16`` (autocast; SAP statistics, losses, the EMA and
  the k-means stay float32);
- a CPU with bf16 matrix units (``amx_bf16`` or ``avx512_bf16`` among the
  ``/proc/cpuinfo`` flags) -> ``bf16`` when the model is at least
  ``bf16_cpu_min_d_model`` wide, else ``fp32``: on a 2-core AMX CPU a step at the
  paper's width (d_model 384) ran 2.9x (stage 1) and 2.6x (stage 2) faster in bf16,
  while at the demo's width (d_model 128) bf16 was slower (stage 1 of fold 1 21.2 s
  against 16.4 s), the casts costing more than the small matmuls save;
- any other device -> ``fp32``.

``fp32``, ``bf16`` and ``fp16`` given explicitly are kept as they are. The resolved
value replaces ``auto`` in the hparams before the stage's identity is computed and
the Brain is built, so ``stage_settings.json`` records the precision in force.

Authors
 * ser_lib contributors
"""

import functools

import torch
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)

AUTO = "auto"
"""The ``precision`` value resolved by :func:`resolve_precision`."""

CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
"""``/proc/cpuinfo`` flags of CPUs with bf16 matrix instructions."""

CPUINFO = "/proc/cpuinfo"


def cpu_flags(cpuinfo=CPUINFO):
    """The CPU's feature flags, from ``/proc/cpuinfo`` (empty where it is absent).

    Arguments
    ---------
    cpuinfo : str
        The file to read.

    Returns
    -------
    frozenset of str

    Example
    -------
    >>> path = getfixture("tmp_path") / "cpuinfo"
    >>> _ = path.write_text("processor : 0\\nflags : fpu avx512_bf16 amx_bf16\\n")
    >>> sorted(cpu_flags(path))
    ['amx_bf16', 'avx512_bf16', 'fpu']
    >>> cpu_flags(getfixture("tmp_path") / "missing")
    frozenset()
    """
    try:
        with open(cpuinfo, encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


@functools.cache
def cpu_has_bf16():
    """Whether this machine's CPU has bf16 matrix instructions (AMX or AVX512-BF16)."""
    return bool(cpu_flags() & set(CPU_BF16_FLAGS))


def resolve_precision(precision, device, d_model, min_cpu_d_model, cpu_bf16=None):
    """The precision a stage trains in: ``precision`` unless it is ``auto``.

    Arguments
    ---------
    precision : str
        ``auto``, ``fp32``, ``bf16`` or ``fp16``.
    device : str or torch.device
        The training device (``cpu``, ``cuda``, ``cuda:1`` ...).
    d_model : int
        Width of the model's transformer.
    min_cpu_d_model : int
        On a CPU with bf16 units, the narrowest ``d_model`` trained in bf16.
    cpu_bf16 : bool, optional
        Whether the CPU has bf16 units (default: :func:`cpu_has_bf16`).

    Returns
    -------
    str
        ``fp32``, ``bf16`` or ``fp16``.

    Example
    -------
    >>> resolve_precision("fp32", "cuda", 384, 256)
    'fp32'
    >>> resolve_precision("auto", "cpu", 384, 256, cpu_bf16=True)
    'bf16'
    >>> resolve_precision("auto", "cpu", 128, 256, cpu_bf16=True)
    'fp32'
    >>> resolve_precision("auto", "cpu", 384, 256, cpu_bf16=False)
    'fp32'
    """
    if precision != AUTO:
        return precision
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        has_bf16 = cpu_has_bf16() if cpu_bf16 is None else cpu_bf16
        if has_bf16 and d_model >= min_cpu_d_model:
            return "bf16"
    return "fp32"


def resolve_hparams_precision(hparams, device, cpu_bf16=None):
    """Replaces ``precision: auto`` in ``hparams`` by the resolved precision.

    Reads ``d_model`` and ``bf16_cpu_min_d_model``; hparams of another precision
    are left as they are.

    Arguments
    ---------
    hparams : dict
        Loaded stage hparams, changed in place.
    device : str or torch.device
        The training device.
    cpu_bf16 : bool, optional
        As for :func:`resolve_precision`.

    Returns
    -------
    str or None
        The precision in force (None when ``hparams`` has no ``precision``).

    Example
    -------
    >>> hparams = {"precision": "auto", "d_model": 384, "bf16_cpu_min_d_model": 256}
    >>> resolve_hparams_precision(hparams, "cpu", cpu_bf16=True)
    'bf16'
    >>> hparams["precision"]
    'bf16'
    """
    precision = hparams.get("precision")
    if precision != AUTO:
        return precision
    for key in ("d_model", "bf16_cpu_min_d_model"):
        if key not in hparams:
            raise KeyError(f"precision: auto needs the hparams key {key!r}")
    resolved = resolve_precision(
        AUTO,
        device,
        hparams["d_model"],
        hparams["bf16_cpu_min_d_model"],
        cpu_bf16=cpu_bf16,
    )
    logger.info(
        "precision: auto -> %s (device %s, d_model %d, bf16 on CPU from d_model %d, "
        "CPU bf16 units: %s)",
        resolved,
        device,
        hparams["d_model"],
        hparams["bf16_cpu_min_d_model"],
        cpu_has_bf16() if cpu_bf16 is None else cpu_bf16,
    )
    hparams["precision"] = resolved
    return resolved
