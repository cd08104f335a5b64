"""Common ground of the stage-1 and stage-2 Brains: progress-driven schedules."""

import speechbrain as sb
import torch
from torch.utils.data import DataLoader


class ProgressBrain(sb.Brain):
    """A ``Brain`` that knows how far training has come, for its schedules.

    Progress is ``(epoch - 1 + step / steps_per_epoch) / number_of_epochs``; the epoch
    counter and the in-epoch step are both restored by the checkpointer, so schedules
    resume exactly. Before every batch the learning rate is set from
    ``hparams.lr_schedule(progress)`` (a cosine schedule in the paper).

    Expects ``hparams.epoch_counter`` and ``hparams.lr_schedule``.
    """

    steps_per_epoch = None
    has_valid_set = False

    def fit(
        self,
        epoch_counter,
        train_set,
        valid_set=None,
        progressbar=None,
        train_loader_kwargs=None,
        valid_loader_kwargs=None,
    ):
        """As ``sb.Brain.fit``; builds the train loader first to know its length."""
        train_loader_kwargs = train_loader_kwargs or {}
        valid_loader_kwargs = valid_loader_kwargs or {}
        if not isinstance(train_set, DataLoader):
            train_set = self.make_dataloader(
                train_set, stage=sb.Stage.TRAIN, **train_loader_kwargs
            )
        self.steps_per_epoch = len(train_set)
        self.has_valid_set = valid_set is not None
        super().fit(
            epoch_counter,
            train_set,
            valid_set=valid_set,
            progressbar=progressbar,
            train_loader_kwargs=train_loader_kwargs,
            valid_loader_kwargs=valid_loader_kwargs,
        )

    def training_progress(self):
        """Fraction of training done, in [0, 1]."""
        counter = self.hparams.epoch_counter
        epoch = max(counter.current, 1)
        within = self.step / self.steps_per_epoch if self.steps_per_epoch else 0.0
        return min((epoch - 1 + within) / counter.limit, 1.0)

    def current_lr(self):
        """Learning rate of the first parameter group."""
        return self.optimizer.param_groups[0]["lr"]

    def on_fit_batch_start(self, batch, should_step):
        """Sets the learning rate from the schedule."""
        lr = self.hparams.lr_schedule(self.training_progress())
        for group in self.optimizer.param_groups:
            group["lr"] = lr


def unwrap(module):
    """The plain module inside a DistributedDataParallel / DataParallel wrapper.

    Example
    -------
    >>> import torch
    >>> lin = torch.nn.Linear(2, 2)
    >>> unwrap(lin) is lin
    True
    """
    if isinstance(
        module,
        (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel),
    ):
        return module.module
    return module
