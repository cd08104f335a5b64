"""A SpeechBrain checkpointer whose checkpoints appear complete or not at all.

``speechbrain.utils.checkpoints.Checkpointer`` writes a checkpoint straight into its
final ``CKPT+<time>`` folder, meta file first; a process killed while it writes the
parameter files leaves a folder that looks complete, and the next run's
``recover_if_possible`` would load it (and fail, or load half of it).
:class:`AtomicCheckpointer` writes every checkpoint into a hidden staging folder and
renames it to its final name once all files are written, so a killed run leaves at
most a staging folder, which is ignored and removed by the next save.
"""

import logging
import os
import pathlib
import shutil

from speechbrain.utils.checkpoints import Checkpoint, Checkpointer
from speechbrain.utils.distributed import ddp_barrier, is_local_rank_zero
from speechbrain.utils.logger import get_logger

from ser_lib.disk_space import DiskFullError, reporting_disk_full

__all__ = ["AtomicCheckpointer", "STAGING_PREFIX"]

logger = get_logger(__name__)

STAGING_PREFIX = ".staging-"
"""Name prefix of a checkpoint folder being written."""


class AtomicCheckpointer(Checkpointer):
    """``Checkpointer`` that renames a fully written checkpoint into place.

    Takes the arguments of ``speechbrain.utils.checkpoints.Checkpointer``. Under DDP,
    every process that writes files (the main process, or one per node when save
    hooks run once per node) renames its staging folder, so separate file systems
    per node are handled too.

    Example
    -------
    >>> import torch
    >>> folder = getfixture("tmp_path")
    >>> model = torch.nn.Linear(2, 2)
    >>> checkpointer = AtomicCheckpointer(folder, recoverables={"model": model})
    >>> ckpt = checkpointer.save_checkpoint()
    >>> ckpt.path.name.startswith("CKPT+"), sorted(p.name for p in ckpt.path.iterdir())
    (True, ['CKPT.yaml', 'model.ckpt'])
    >>> _ = (folder / (STAGING_PREFIX + "CKPT+killed")).mkdir()  # an interrupted save
    >>> [c.path for c in checkpointer.list_checkpoints()] == [ckpt.path]
    True
    >>> checkpointer.recover_if_possible().path == ckpt.path
    True
    """

    def _staging_path(self, final_path):
        return final_path.with_name(STAGING_PREFIX + final_path.name)

    def _new_checkpoint_dirpath(self):
        return self._staging_path(super()._new_checkpoint_dirpath())

    def _custom_checkpoint_dirpath(self, name):
        return self._staging_path(super()._custom_checkpoint_dirpath(name))

    def _remove_stale_staging(self):
        """Removes staging folders left by a killed run (one writer per folder)."""
        for path in self.checkpoints_dir.glob(STAGING_PREFIX + "*"):
            logger.info("Removing %s, an incomplete checkpoint of a killed run", path)
            shutil.rmtree(path, ignore_errors=True)

    def save_checkpoint(
        self, meta=None, end_of_epoch=True, name=None, verbosity=logging.INFO
    ):
        """Saves a checkpoint (see ``Checkpointer.save_checkpoint``), atomically.

        Returns
        -------
        Checkpoint or None
            The checkpoint at its final path (None on non-main processes).

        Raises
        ------
        ser_lib.disk_space.DiskFullError
            ``no space left on device while writing a checkpoint in <folder>``,
            after removing the half-written checkpoint (the last complete one is
            kept for the re-run).
        """
        if is_local_rank_zero():
            self._remove_stale_staging()
        ddp_barrier()
        try:
            with reporting_disk_full(f"a checkpoint in {self.checkpoints_dir}"):
                staged = super().save_checkpoint(
                    meta={} if meta is None else meta,
                    end_of_epoch=end_of_epoch,
                    name=name,
                    verbosity=logging.DEBUG,
                )
        except DiskFullError:
            self._remove_stale_staging()  # frees the half-written checkpoint
            raise
        ddp_barrier()  # every process has written its files
        final = None
        if staged is not None:
            final = staged.path.with_name(staged.path.name[len(STAGING_PREFIX) :])
        if is_local_rank_zero():
            self._rename_staged(final)
        ddp_barrier()
        if staged is None:
            return None
        ckpt_type = "end-of-epoch" if end_of_epoch else "intra-epoch"
        logger.log(verbosity, f"Saved an {ckpt_type} checkpoint in {final}")
        return Checkpoint(
            final,
            staged.meta,
            {
                key: final / pathlib.Path(path).name
                for key, path in staged.paramfiles.items()
            },
        )

    def _rename_staged(self, final):
        """Moves this process's staging folder(s) into place.

        ``final`` is known on the main process; other node-local writers rename
        whatever staging folder they find.
        """
        staged_paths = (
            [self._staging_path(final)]
            if final is not None
            else list(self.checkpoints_dir.glob(STAGING_PREFIX + "*"))
        )
        for staged_path in staged_paths:
            target = staged_path.with_name(staged_path.name[len(STAGING_PREFIX) :])
            if not staged_path.exists():
                continue  # renamed by another process on a shared file system
            if target.exists():  # re-saving under a custom name
                shutil.rmtree(target)
            try:
                os.rename(staged_path, target)
            except FileNotFoundError:
                continue  # renamed concurrently by another process
