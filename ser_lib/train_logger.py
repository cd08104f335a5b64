"""A SpeechBrain train logger that also writes machine-readable JSON lines."""

import json

import numpy as np
import torch
from speechbrain.utils.distributed import if_main_process
from speechbrain.utils.train_logger import FileTrainLogger


class JsonlTrainLogger(FileTrainLogger):
    """``FileTrainLogger`` that appends every logged epoch to a JSON-lines file too.

    ``train_log.txt`` stays human-readable, the JSON lines feed the report curves.

    Arguments
    ---------
    save_file : str
        The text log (as ``FileTrainLogger``).
    jsonl_file : str
        One JSON object per ``log_stats`` call:
        ``{"meta": {...}, "train": {...}, "valid": {...}, "test": {...}}``.
    precision : int
        Digits in the text log.

    Example
    -------
    >>> import tempfile, os, json
    >>> tmp = tempfile.mkdtemp()
    >>> log = JsonlTrainLogger(os.path.join(tmp, "log.txt"), os.path.join(tmp, "log.jsonl"))
    >>> log.log_stats({"epoch": 1}, train_stats={"loss": 0.5}, verbose=False)
    >>> json.loads(open(os.path.join(tmp, "log.jsonl")).readline())["train"]
    {'loss': 0.5}
    """

    def __init__(self, save_file, jsonl_file, precision=4):
        super().__init__(save_file, precision=precision)
        self.jsonl_file = jsonl_file

    def log_stats(
        self,
        stats_meta,
        train_stats=None,
        valid_stats=None,
        test_stats=None,
        verbose=True,
    ):
        """Writes the text line (parent class) and the JSON line.

        Call it on every process: under DDP the parent's ``log_stats`` is
        ``main_process_only``, which broadcasts its result to all ranks, so every
        rank must reach it (only the main process writes).
        """
        super().log_stats(stats_meta, train_stats, valid_stats, test_stats, verbose)
        if not if_main_process():
            return
        record = {"meta": _plain(stats_meta)}
        for name, stats in (
            ("train", train_stats),
            ("valid", valid_stats),
            ("test", test_stats),
        ):
            if stats is not None:
                record[name] = _plain(stats)
        with open(self.jsonl_file, "a", encoding="utf-8") as fout:
            fout.write(json.dumps(record) + "\n")


def _plain(stats):
    """Turns tensors and numpy scalars into plain floats for JSON."""
    out = {}
    for key, value in stats.items():
        if isinstance(value, (torch.Tensor, np.generic)):
            value = value.item()
        out[key] = value
    return out
