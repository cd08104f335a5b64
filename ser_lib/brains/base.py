"""Common ground of the stage-1 and stage-2 Brains.

* Progress-driven schedules (the learning rate is set before every batch from how far
  training has come).
* Checkpoints that resume exactly: the in-epoch step, the running loss and each
  Brain's running epoch statistics (:meth:`ProgressBrain.epoch_state`) are saved in
  every checkpoint, so a run killed after an intra-epoch checkpoint
  (``ckpt_interval_minutes`` / ``ckpt_interval_steps``) continues mid-epoch with the
  right averages.
* Under DDP, a check that every rank holds the same replicated modules
  (:meth:`ProgressBrain.check_replicas`).
* No per-step host sync: the training loss, its finiteness and each Brain's running
  statistics stay on the device and are read once every ``sync_interval`` steps
  (:meth:`ProgressBrain.synchronise`), as a GPU needs.
"""

import hashlib
import json

import speechbrain as sb
import torch
import yaml
from speechbrain.utils.distributed import is_distributed_initialized
from speechbrain.utils.logger import get_logger
from torch.utils.data import DataLoader

logger = get_logger(__name__)


@sb.utils.checkpoints.register_checkpoint_hooks
class ProgressBrain(sb.Brain):
    """A ``Brain`` that knows how far training has come, and resumes exactly.

    Progress is ``(epoch - 1 + step / steps_per_epoch) / number_of_epochs``; the epoch
    counter and the in-epoch step are both restored by the checkpointer, so schedules
    resume exactly. Before every batch the learning rate is set from
    ``hparams.lr_schedule(progress)`` (a cosine schedule in the paper).

    Subclasses keep their running statistics of a stage in :meth:`epoch_state`
    / :meth:`load_epoch_state` / :meth:`reset_epoch_state`; the training stage's are
    checkpointed, and a run resumed mid-epoch keeps the restored ones instead of
    resetting them. ``replicated_modules`` names the modules that must be identical
    on every DDP rank (:meth:`check_replicas`).

    Training steps do not wait for the device: the running loss, the count of
    non-finite losses and the subclasses' statistics are summed on the device and
    read by :meth:`synchronise` every ``hparams.sync_interval`` steps, at the end
    of the epoch and before every checkpoint. A non-finite loss therefore stops
    training (after ``nonfinite_patience`` of them, as ``sb.Brain``) at the next
    synchronisation, at most ``sync_interval - 1`` steps after it happened.

    Expects ``hparams.epoch_counter``, ``hparams.lr_schedule`` and
    ``hparams.sync_interval``.
    """

    steps_per_epoch = None
    has_valid_set = False
    current_stage = None
    replicated_modules = ()
    _pending = None  # device-side running values since the last synchronise()
    _synced_step = 0  # the in-epoch step of the last synchronise()

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

    def on_fit_start(self):
        """As ``sb.Brain``'s (wrap, optimisers, recovery); reports a mid-epoch resume."""
        super().on_fit_start()
        if self.step > 0:
            logger.info(
                "Resuming epoch %d at step %d of %d from an intra-epoch checkpoint",
                self.hparams.epoch_counter.current + 1,
                self.step,
                self.steps_per_epoch,
            )

    # ------------------------------------------------------------ epoch state

    def epoch_state(self):
        """The running statistics of the current stage, JSON-serialisable.

        Saved in every checkpoint taken during training; the default has none.
        """
        return {}

    def load_epoch_state(self, state):
        """Restores what :meth:`epoch_state` returned (training stage)."""
        del state

    def reset_epoch_state(self, stage):
        """Clears the running statistics at the start of ``stage``."""
        del stage

    def on_stage_start(self, stage, epoch=None):
        """Resets the stage's statistics, unless a training epoch resumes mid-way.

        ``sb.Brain`` resets ``step`` to 0 after every epoch (and an end-of-epoch
        checkpoint restores 0), so a positive step here means the checkpointer has
        just restored an intra-epoch checkpoint with its statistics.
        """
        self.current_stage = stage
        if stage == sb.Stage.TRAIN and self.step > 0:
            return
        self._pending, self._synced_step = None, 0
        self.reset_epoch_state(stage)

    # ------------------------------------------------------------ host syncs

    def fit_batch(self, batch):
        """As ``sb.Brain.fit_batch``, but the loss it returns stays on the device."""
        should_step = (self.step % self.grad_accumulation_factor) == 0
        self.on_fit_batch_start(batch, should_step)
        with self.no_sync(not should_step):
            with self.training_ctx:
                outputs = self.compute_forward(batch, sb.Stage.TRAIN)
                loss = self.compute_objectives(outputs, batch, sb.Stage.TRAIN)
            scaled_loss = self.scaler.scale(loss / self.grad_accumulation_factor)
            self.check_loss_isfinite(scaled_loss)
            scaled_loss.backward()
        if should_step:
            self.optimizers_step()
        self.on_fit_batch_end(batch, outputs, loss, should_step)
        return loss.detach()

    def _pend(self, key, value):
        """Adds a device tensor to the running values read by :meth:`synchronise`."""
        if self._pending is None:
            self._pending = {}
        value = value.detach().double()
        pending = self._pending.get(key)
        self._pending[key] = value if pending is None else pending + value

    def check_loss_isfinite(self, loss):
        """Counts a non-finite loss on the device; :meth:`synchronise` acts on it."""
        self._pend("nonfinite", ~torch.isfinite(loss.detach()))

    def update_average(self, loss, avg_loss):
        """Training: sums the loss on the device, synchronising every
        ``sync_interval`` steps and at the last step of the epoch; evaluation as
        ``sb.Brain``."""
        if self.current_stage != sb.Stage.TRAIN:
            return super().update_average(loss, avg_loss)
        self._pend("loss", torch.where(torch.isfinite(loss), loss, 0.0))
        if (
            self.step % self.hparams.sync_interval == 0
            or self.step == self.steps_per_epoch
        ):
            self.synchronise()
        return self.avg_train_loss

    def synchronise(self):
        """Reads the device-side running values (one host sync).

        Folds the summed losses into ``avg_train_loss`` (the mean of the epoch's
        finite losses so far, as ``sb.Brain``'s running average), lets the subclass
        read its statistics (:meth:`sync_epoch_state`) and raises, as
        ``sb.Brain.check_loss_isfinite``, once more than ``nonfinite_patience``
        non-finite losses were seen this epoch.
        """
        pending = self._pending or {}
        if pending:  # one device-to-host copy of every pending value
            values = torch.stack(list(pending.values())).tolist()
            pending = dict(zip(pending, values, strict=True))
        self._pending = None
        if self.step > self._synced_step:
            self.avg_train_loss = (
                self.avg_train_loss * self._synced_step + pending.get("loss", 0.0)
            ) / self.step
        first_step, self._synced_step = self._synced_step + 1, self.step
        self.sync_epoch_state()
        nonfinite = int(pending.get("nonfinite", 0.0))
        if nonfinite:
            self.nonfinite_count += nonfinite
            if self.nonfinite_count > self.nonfinite_patience:
                raise ValueError(
                    f"Loss is not finite ({nonfinite} time(s) in steps {first_step}"
                    f"-{self.step} of epoch {self.hparams.epoch_counter.current}) "
                    "and patience is exhausted. To debug, wrap `fit()` with "
                    "autograd's `detect_anomaly()`"
                )
            logger.warning("Non-finite loss: patience not yet exhausted.")

    def sync_epoch_state(self):
        """Reads the subclass's device-side statistics; called by :meth:`synchronise`."""

    def training_loss(self, stage, stage_loss):
        """The stage loss to log: for training, synchronised first.

        ``sb.Brain`` passes ``avg_train_loss`` to ``on_stage_end`` as it stood before
        the call, which misses the last steps when an epoch stops early (debug mode,
        an optimiser-step limit); subclasses call this first in ``on_stage_end``.
        """
        if stage != sb.Stage.TRAIN:
            return stage_loss
        self.synchronise()
        return self.avg_train_loss

    @sb.utils.checkpoints.mark_as_saver
    def _save(self, path):
        """Saves the in-epoch step, running loss and epoch state (JSON)."""
        if self.current_stage == sb.Stage.TRAIN:
            self.synchronise()
        state = {
            "step": self.step,
            "avg_train_loss": float(self.avg_train_loss),
            "optimizer_step": self.optimizer_step,
            "epoch_state": (
                self.epoch_state() if self.current_stage == sb.Stage.TRAIN else {}
            ),
        }
        with open(path, "w", encoding="utf-8") as f:
            json.dump(state, f)

    @sb.utils.checkpoints.mark_as_loader
    def _recover(self, path, end_of_epoch):
        """Restores :meth:`_save`'s state; an end-of-epoch checkpoint resumes at step 0.

        Our Brains save their end-of-epoch checkpoint in ``on_stage_end(TRAIN)``
        when there is no validation set, before ``sb.Brain`` resets the in-epoch
        step; restoring that step would start the next epoch (and evaluation's
        running average) as if ``steps_per_epoch`` batches had already run.
        """
        with open(path, encoding="utf-8") as f:
            state = yaml.safe_load(f)  # JSON, or sb.Brain's YAML in older checkpoints
        self.optimizer_step = state["optimizer_step"]
        if end_of_epoch:
            self.step = 0
            self.avg_train_loss = 0.0
            return
        self.step = state["step"]
        self.avg_train_loss = state["avg_train_loss"]
        self._pending, self._synced_step = None, self.step
        self.load_epoch_state(state.get("epoch_state", {}))

    # ------------------------------------------------------------ schedules

    def training_progress(self):
        """Fraction of training done, in [0, 1]."""
        counter = self.hparams.epoch_counter
        epoch = max(counter.current, 1)
        within = self.step / self.steps_per_epoch if self.steps_per_epoch else 0.0
        return min((epoch - 1 + within) / counter.limit, 1.0)

    def stage_progress(self, stage):
        """Training progress for a stage's schedules (e.g. λ of the logged loss).

        In training, :meth:`training_progress`; in validation and test, the progress
        at the end of the current training epoch (their batch counter is not
        training progress).

        Example
        -------
        >>> from types import SimpleNamespace
        >>> counter = SimpleNamespace(current=2, limit=4)
        >>> brain = SimpleNamespace(hparams=SimpleNamespace(epoch_counter=counter),
        ...                         step=5, steps_per_epoch=10)
        >>> brain.training_progress = lambda: ProgressBrain.training_progress(brain)
        >>> ProgressBrain.stage_progress(brain, sb.Stage.TRAIN)
        0.375
        >>> ProgressBrain.stage_progress(brain, sb.Stage.VALID)
        0.5
        """
        if stage == sb.Stage.TRAIN:
            return self.training_progress()
        counter = self.hparams.epoch_counter
        return min(max(counter.current, 1) / counter.limit, 1.0)

    def current_lr(self):
        """The schedule's learning rate (that of the first parameter group, divided
        by its ``lr_scale``)."""
        group = self.optimizer.param_groups[0]
        return group["lr"] / group.get("lr_scale", 1.0)

    def on_fit_batch_start(self, batch, should_step):
        """Sets every group's learning rate: schedule(progress) x the group's
        ``lr_scale`` (1.0 when the group has none, see :func:`module_param_groups`)."""
        lr = self.hparams.lr_schedule(self.training_progress())
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)

    # ------------------------------------------------------------ DDP

    def check_replicas(self):
        """Under DDP, checks that every rank holds the same ``replicated_modules``.

        Gathers a digest of each module's state (:func:`state_digest`) from every
        rank; all ranks raise if any module differs. Call it on every rank.

        Returns
        -------
        dict or None
            Module name -> digest (hex), or None when not distributed.

        Raises
        ------
        RuntimeError
            Naming the modules whose state differs between ranks.
        """
        if not is_distributed_initialized() or not self.replicated_modules:
            return None
        digests = {
            name: state_digest(unwrap(self.modules[name]).state_dict())
            for name in self.replicated_modules
        }
        gathered = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(gathered, digests)
        differing = [
            name
            for name in self.replicated_modules
            if len({rank_digests[name] for rank_digests in gathered}) > 1
        ]
        if differing:
            raise RuntimeError(
                f"DDP ranks hold different {differing} at epoch "
                f"{self.hparams.epoch_counter.current}: "
                + "; ".join(
                    f"rank {rank}: {rank_digests}"
                    for rank, rank_digests in enumerate(gathered)
                )
            )
        logger.info(
            "Replicas identical on %d ranks: %s",
            len(gathered),
            " ".join(f"{name}={digest}" for name, digest in digests.items()),
        )
        return digests


def module_param_groups(modules, lr_scales=None):
    """One optimizer parameter group per module with trainable weights.

    Every group records its module's ``lr_scale`` (``lr_scales[name]``, 1.0 when
    not listed): :meth:`ProgressBrain.on_fit_batch_start` sets the group's learning
    rate to the schedule's times that scale. A dotted name (``student.input_mix``)
    scales one submodule of a module: its parameters get a group of their own,
    after their module's group, which keeps the rest.

    Arguments
    ---------
    modules : dict or torch.nn.ModuleDict
        Module name -> module (DDP-wrapped modules are looked into).
    lr_scales : dict, optional
        Module name, or ``module.submodule`` path -> multiplier of the schedule's
        learning rate.

    Returns
    -------
    list of dict
        ``params``, ``lr_scale`` and ``name`` of every group.

    Raises
    ------
    ValueError
        If ``lr_scales`` names a module that ``modules`` lacks, or a submodule
        path that its module does not have.

    Example
    -------
    >>> modules = {"mix": torch.nn.Linear(2, 2), "head": torch.nn.Linear(2, 3)}
    >>> groups = module_param_groups(modules, {"mix": 20.0})
    >>> [(g["name"], g["lr_scale"], len(g["params"])) for g in groups]
    [('mix', 20.0, 2), ('head', 1.0, 2)]
    >>> net = {"net": torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))}
    >>> groups = module_param_groups(net, {"net.1": 10.0})
    >>> [(g["name"], g["lr_scale"], len(g["params"])) for g in groups]
    [('net', 1.0, 2), ('net.1', 10.0, 2)]
    """
    scales = dict(lr_scales or {})
    unknown = {name.split(".", 1)[0] for name in scales} - set(modules.keys())
    if unknown:
        raise ValueError(f"lr_scales names unknown modules {sorted(unknown)}")
    groups = []
    for name, module in modules.items():
        taken = set()
        subgroups = []
        for key in sorted(k for k in scales if k.startswith(f"{name}.")):
            path = key[len(name) + 1 :]
            try:
                submodule = unwrap(module).get_submodule(path)
            except AttributeError as error:
                raise ValueError(
                    f"lr_scales names {key!r}, but module {name!r} has no "
                    f"submodule {path!r} ({error})"
                ) from None
            params = [
                p
                for p in submodule.parameters()
                if p.requires_grad and id(p) not in taken
            ]
            taken.update(id(p) for p in params)
            if params:
                subgroups.append(
                    {"params": params, "lr_scale": float(scales[key]), "name": key}
                )
        params = [
            p for p in module.parameters() if p.requires_grad and id(p) not in taken
        ]
        if params:
            groups.append(
                {
                    "params": params,
                    "lr_scale": float(scales.get(name, 1.0)),
                    "name": name,
                }
            )
        groups.extend(subgroups)
    return groups


def optimizer_params(modules, lr_scales=None):
    """What an optimizer gets for ``modules``: their trainable parameters in one
    group when ``lr_scales`` is empty, else :func:`module_param_groups`.

    Arguments
    ---------
    modules : dict or torch.nn.ModuleDict
        Module name -> module.
    lr_scales : dict, optional
        As :func:`module_param_groups`.

    Returns
    -------
    list
        Parameters (each once, in module order), or parameter groups.

    Example
    -------
    >>> modules = {"mix": torch.nn.Linear(2, 2), "head": torch.nn.Linear(2, 3)}
    >>> len(optimizer_params(modules)), len(optimizer_params(modules, {"mix": 2.0}))
    (4, 2)
    """
    if lr_scales:
        return module_param_groups(modules, lr_scales)
    trainable = (
        p for module in modules.values() for p in module.parameters() if p.requires_grad
    )
    return list(dict.fromkeys(trainable))


def state_digest(state_dict):
    """SHA-256 of a state dict: names, dtypes, shapes and values of every tensor.

    Two modules have the same digest exactly when their states are bit-identical.

    Arguments
    ---------
    state_dict : dict
        Name -> tensor (e.g. ``module.state_dict()`` or a loaded ``.ckpt`` file).

    Returns
    -------
    str
        Hex digest.

    Example
    -------
    >>> a = torch.nn.Linear(2, 2)
    >>> b = torch.nn.Linear(2, 2)
    >>> _ = b.load_state_dict(a.state_dict())
    >>> state_digest(a.state_dict()) == state_digest(b.state_dict())
    True
    >>> with torch.no_grad():
    ...     _ = b.bias.add_(1e-7)
    >>> state_digest(a.state_dict()) == state_digest(b.state_dict())
    False
    """
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def unwrap(module):
    """The plain module inside a DistributedDataParallel / DataParallel wrapper.

    Example
    -------
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
