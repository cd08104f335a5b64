"""Local attributes: online mini-batch k-means prototypes of teacher frames.

Implements eqns 3-5 of Song et al. (arXiv 2509.23795, section II-B2) with the
mini-batch k-means learning rate of Sculley (2010): each prototype ``p_k`` keeps
the total number ``N_k`` of frames ever assigned to it, and a batch that assigns
``n_k`` frames with sum ``s_k`` to it moves it by
``p_k <- p_k + (n_k / N_k) (s_k / n_k - p_k)`` (after ``N_k += n_k``), which is
exactly the per-frame update ``p <- p + (1 / N)(z - p)`` applied to the batch.

The prototypes, counts and re-seed state are buffers, so they are saved with
``state_dict`` and restored by checkpointing.

The paper leaves two readings open, both settings here: the rate of eqn 5
(``update="cumulative"``, Sculley's ``n_k / N_k``, the all-time mean of the
frames ever assigned; or ``update="ema"``, a constant ``1 - decay`` that follows
the drifting teacher) and the student logits of eqn 6 (:func:`prototype_logits`:
``"cosine"``, Sec. II-B3's ``cos(z, p) / tau``; or ``"neg_sqdist"``, Sec. II-B1's
"negative distances" ``-||z - p||^2 / tau``, consistent with eqn 4's Euclidean
assignment). Frames are assigned and prototypes moved in float32 with autocast
off, whatever the training precision.

Authors
 * ser_lib contributors
"""

import torch
import torch.nn.functional as F
from torch import nn


def prototype_cosine_logits(z, prototypes, tau, eps=1e-8):
    """Cosine similarities between frames and (detached) prototypes, divided by tau.

    Arguments
    ---------
    z : torch.Tensor
        Frames [..., D].
    prototypes : torch.Tensor
        Prototypes [K, D]; detached, so no gradient reaches them.
    tau : float
        Temperature (> 0).
    eps : float
        Epsilon of the L2 normalisation.

    Returns
    -------
    torch.Tensor
        Logits [..., K].

    Example
    -------
    >>> z = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    >>> p = torch.tensor([[3.0, 0.0], [0.0, -1.0]])
    >>> prototype_cosine_logits(z, p, tau=0.5)
    tensor([[ 2.,  0.],
            [ 0., -2.]])
    """
    if tau <= 0:
        raise ValueError(f"prototype_cosine_logits: tau must be > 0, got {tau}")
    z_unit = F.normalize(z, dim=-1, eps=eps)
    p_unit = F.normalize(prototypes.detach().to(z.dtype), dim=-1, eps=eps)
    return z_unit @ p_unit.t() / tau


PCE_LOGITS = ("cosine", "neg_sqdist")
"""Values of ``pce_logits``: the student logits of eqn 6."""
KMEANS_UPDATES = ("cumulative", "ema")
"""Values of ``kmeans_update``: the prototype rate of eqn 5."""


def prototype_neg_sqdist_logits(z, prototypes, tau):
    """Negative squared Euclidean distances to the (detached) prototypes over tau.

    ``-||z - p_k||^2 / tau``, computed in float32.

    Arguments
    ---------
    z : torch.Tensor
        Frames [..., D].
    prototypes : torch.Tensor
        Prototypes [K, D]; detached, so no gradient reaches them.
    tau : float
        Temperature (> 0).

    Returns
    -------
    torch.Tensor
        Float32 logits [..., K].

    Example
    -------
    >>> z = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    >>> p = torch.tensor([[3.0, 0.0], [0.0, -1.0]])
    >>> prototype_neg_sqdist_logits(z, p, tau=0.5)
    tensor([[ -8.,  -4.],
            [-26., -18.]])
    """
    if tau <= 0:
        raise ValueError(f"prototype_neg_sqdist_logits: tau must be > 0, got {tau}")
    z = z.float()
    p = prototypes.detach().to(device=z.device, dtype=torch.float32)
    dist2 = (z * z).sum(-1, keepdim=True) - 2.0 * z @ p.t() + (p * p).sum(-1)
    return -dist2.clamp_min(0.0) / tau


def prototype_logits(z, prototypes, tau, kind="cosine"):
    """The student logits of eqn 6: ``kind`` is one of :data:`PCE_LOGITS`.

    Computed in float32 with autocast off (a float32 island under bf16/fp16).

    Example
    -------
    >>> z, p = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    >>> prototype_logits(z, p, 1.0), prototype_logits(z, p, 1.0, "neg_sqdist")
    (tensor([[1., 0.]]), tensor([[-1., -2.]]))
    >>> prototype_logits(z, p, 1.0, "dot")
    Traceback (most recent call last):
    ...
    ValueError: pce_logits must be one of ('cosine', 'neg_sqdist'), got 'dot'
    """
    if kind not in PCE_LOGITS:
        raise ValueError(f"pce_logits must be one of {PCE_LOGITS}, got {kind!r}")
    with torch.autocast(device_type=z.device.type, enabled=False):
        if kind == "neg_sqdist":
            return prototype_neg_sqdist_logits(z, prototypes, tau)
        return prototype_cosine_logits(z.float(), prototypes.float(), tau)


def _distributed():
    """True when running inside an initialised torch.distributed process group."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


class LocalAttributes(nn.Module):
    """K prototypes of the teacher's frame representations (local attributes).

    Arguments
    ---------
    num_prototypes : int
        Number of prototypes K (1024 in the paper).
    dim : int
        Frame dimension D.
    reseed_after : int
        A prototype not used by any batch for more than this many ``update``
        steps is "dead": it is re-seeded from a random frame of the current
        batch, its count reset to 0 (as at initialisation, so the first batch
        that uses it moves it all the way to that batch's mean of its frames,
        ``eta = 1``) and its ``last_used`` set to the current step.
    eps : float
        Epsilon of the L2 normalisation in :meth:`cosine_logits`.
    chunk_size : int
        Frames per chunk in :meth:`assign` (bounds the ``chunk x K`` distance
        matrix).
    update : str
        The rate of eqn 5 (:data:`KMEANS_UPDATES`): ``"cumulative"``
        (``eta_k = n_k / N_k``) or ``"ema"`` (``eta_k = 1 - decay`` for every
        prototype the batch uses).
    decay : float
        EMA decay of ``update="ema"``, in [0, 1).

    Example
    -------
    >>> la = LocalAttributes(num_prototypes=8, dim=4, reseed_after=10)
    >>> g = torch.Generator().manual_seed(0)
    >>> stats = la.update(torch.randn(50, 4), generator=g)
    >>> sorted(stats)
    ['dead', 'distortion', 'perplexity', 'reseeded', 'used']
    >>> idx, dist2 = la.assign(torch.randn(5, 4))
    >>> idx.shape, dist2.shape, la.cosine_logits(torch.randn(5, 4), tau=0.1).shape
    (torch.Size([5]), torch.Size([5]), torch.Size([5, 8]))
    """

    def __init__(
        self,
        num_prototypes=1024,
        dim=384,
        reseed_after=100,
        eps=1e-8,
        chunk_size=4096,
        update="cumulative",
        decay=0.99,
    ):
        super().__init__()
        if update not in KMEANS_UPDATES:
            raise ValueError(
                f"kmeans_update must be one of {KMEANS_UPDATES}, got {update!r}"
            )
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"LocalAttributes: decay must be in [0, 1), got {decay}")
        self.update_rule = update
        self.decay = decay
        if num_prototypes < 1 or dim < 1:
            raise ValueError(
                "LocalAttributes: num_prototypes and dim must be >= 1, got "
                f"{num_prototypes} and {dim}"
            )
        if reseed_after < 0:
            raise ValueError(
                f"LocalAttributes: reseed_after must be >= 0, got {reseed_after}"
            )
        self.num_prototypes = num_prototypes
        self.dim = dim
        self.reseed_after = reseed_after
        self.eps = eps
        self.chunk_size = chunk_size
        self.register_buffer("prototypes", torch.zeros(num_prototypes, dim))
        self.register_buffer("counts", torch.zeros(num_prototypes, dtype=torch.float64))
        self.register_buffer("last_used", torch.zeros(num_prototypes, dtype=torch.long))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def extra_repr(self):
        """Summary shown by ``print(module)``."""
        return (
            f"num_prototypes={self.num_prototypes}, dim={self.dim}, "
            f"reseed_after={self.reseed_after}, update={self.update_rule}, "
            f"decay={self.decay}"
        )

    def _check_frames(self, z, caller):
        """Raises if z is not [N, D] with N > 0."""
        if z.dim() != 2 or z.shape[1] != self.dim or z.shape[0] == 0:
            raise ValueError(
                f"LocalAttributes.{caller}: expected frames [N>0, {self.dim}], "
                f"got {tuple(z.shape)}"
            )

    @torch.no_grad()
    def assign(self, z):
        """Nearest prototype of every frame (eqn 4, Euclidean).

        Arguments
        ---------
        z : torch.Tensor
            Frames [N, D].

        Returns
        -------
        idx : torch.Tensor
            Long [N], index of the nearest prototype.
        dist2 : torch.Tensor
            [N], squared Euclidean distance to it.

        Example
        -------
        >>> la = LocalAttributes(num_prototypes=2, dim=2)
        >>> int(la.update(torch.tensor([[0.0, 0.0], [5.0, 5.0]]))["used"]) >= 1
        True
        >>> la.assign(la.prototypes + 0.1)[0].tolist()
        [0, 1]
        """
        self._check_frames(z, "assign")
        if not bool(self.initialized):
            raise RuntimeError(
                "LocalAttributes.assign: prototypes are not initialised yet; call "
                "update() on a batch of frames first"
            )
        z = z.detach().to(device=self.prototypes.device, dtype=self.prototypes.dtype)
        protos = self.prototypes
        with torch.autocast(device_type=z.device.type, enabled=False):
            protos_sq = (protos * protos).sum(dim=1)  # [K]
            indices = []
            for chunk in z.split(self.chunk_size):
                # ||z||^2 is the same for every k, so it is left out of the argmin.
                scores = protos_sq.unsqueeze(0) - 2.0 * chunk @ protos.t()  # [n, K]
                indices.append(scores.argmin(dim=1))
            idx = torch.cat(indices)
            dist2 = ((z - protos[idx]) ** 2).sum(dim=1)
        return idx, dist2

    def _random_frames(self, z, num, generator, distributed):
        """``num`` random frames of z (without replacement if possible).

        Under torch.distributed, rank 0 draws them and broadcasts them so every
        rank gets the same frames.
        """
        rng_device = generator.device if generator is not None else torch.device("cpu")
        frames = z.new_empty(num, z.shape[1])
        if not distributed or torch.distributed.get_rank() == 0:
            if num <= z.shape[0]:
                idx = torch.randperm(z.shape[0], generator=generator, device=rng_device)
                idx = idx[:num]
            else:
                idx = torch.randint(
                    z.shape[0], (num,), generator=generator, device=rng_device
                )
            frames.copy_(z[idx.to(z.device)])
        if distributed:
            torch.distributed.broadcast(frames, src=0)
        return frames

    @torch.no_grad()
    def initialize(self, z, generator=None):
        """Starts the prototypes from K random frames (the start of eqn 5's k-means).

        ``update`` calls it on its first call; a Brain calls it directly when it
        needs pseudo-labels (eqn 4) of the very first batch before the first update.
        Under torch.distributed the frames come from rank 0.

        Arguments
        ---------
        z : torch.Tensor
            Frames [N, D] (only valid frames).
        generator : torch.Generator, optional
            Random generator; torch's default CPU generator when omitted.

        Example
        -------
        >>> la = LocalAttributes(num_prototypes=3, dim=2)
        >>> la.initialize(torch.randn(10, 2))
        >>> bool(la.initialized), la.assign(torch.randn(5, 2))[0].shape
        (True, torch.Size([5]))
        """
        self._check_frames(z, "initialize")
        z = z.detach().to(device=self.prototypes.device, dtype=self.prototypes.dtype)
        self.prototypes.copy_(
            self._random_frames(z, self.num_prototypes, generator, _distributed())
        )
        self.counts.zero_()
        self.last_used.fill_(int(self.step))
        self.initialized.fill_(True)

    @torch.no_grad()
    def update(self, z, generator=None, assignment=None):
        """One mini-batch k-means step on the (valid) teacher frames of a batch.

        Initialises the prototypes from K random frames on the first call,
        assigns every frame (eqn 4) unless ``assignment`` already gives it,
        moves every used prototype with the rate of eqn 5 (``n_k / N_k``, or
        ``1 - decay`` with ``update="ema"``) and re-seeds dead prototypes. Runs in
        float32 with autocast off.

        Under torch.distributed (initialised process group) the per-prototype
        sums and counts and the distortion totals are all-reduced (SUM) before
        the update, and the frames used for initialisation and re-seeding are
        drawn on rank 0 and broadcast, so all ranks keep identical prototypes
        (every rank must call ``update`` at every step).

        Arguments
        ---------
        z : torch.Tensor
            Frames [N, D] (only valid frames; detached inside).
        generator : torch.Generator, optional
            Random generator for initialisation and re-seeding; torch's default
            CPU generator when omitted.
        assignment : tuple of torch.Tensor, optional
            ``(idx, dist2)`` as returned by :meth:`assign` for these frames
            with the current prototypes (e.g. the pseudo-labels of eqn 4 the
            step already computed); reused instead of assigning again.

        Returns
        -------
        dict
            ``distortion``: eqn 3's L_VQ divided by the number of frames, i.e.
            the mean over frames of the squared distance (summed over dims) to
            the nearest prototype, measured at assignment time (before the
            move); ``perplexity``: exp of the entropy of the batch's assignment
            histogram; ``used``: prototypes used by the batch; ``dead``:
            prototypes unused for more than ``reseed_after`` steps (before
            re-seeding); ``reseeded``: prototypes re-seeded. All 0-dim tensors
            on the prototypes' device (reading them is left to the caller, so
            a step needs no host sync for them), global over ranks.

        Example
        -------
        >>> la = LocalAttributes(num_prototypes=4, dim=2, reseed_after=5)
        >>> stats = la.update(torch.randn(20, 2), generator=torch.Generator().manual_seed(1))
        >>> int(la.step), float(la.counts.sum()), 1 <= int(stats["used"]) <= 4
        (1, 20.0, True)
        >>> z = torch.randn(20, 2)
        >>> _ = la.update(z, assignment=la.assign(z))  # eqn 4 computed once
        >>> int(la.step)
        2
        """
        self._check_frames(z, "update")
        distributed = _distributed()
        z = z.detach().to(device=self.prototypes.device, dtype=self.prototypes.dtype)
        if not bool(self.initialized):
            if assignment is not None:
                raise ValueError(
                    "LocalAttributes.update: an assignment was given before the "
                    "prototypes were initialised"
                )
            self.initialize(z, generator=generator)

        if assignment is None:
            assignment = self.assign(z)
        idx, dist2 = (t.to(z.device) for t in assignment)
        if idx.shape != z.shape[:1] or dist2.shape != z.shape[:1]:
            raise ValueError(
                "LocalAttributes.update: assignment shapes "
                f"{tuple(idx.shape)}, {tuple(dist2.shape)} do not match "
                f"{z.shape[0]} frames"
            )
        sums = z.new_zeros(self.num_prototypes, self.dim).index_add_(0, idx, z)
        batch_counts = torch.bincount(idx, minlength=self.num_prototypes).to(
            self.counts.dtype
        )
        totals = torch.stack(
            [
                dist2.sum().double(),
                torch.tensor(float(z.shape[0]), device=z.device).double(),
            ]
        )
        if distributed:
            torch.distributed.all_reduce(sums)
            torch.distributed.all_reduce(batch_counts)
            torch.distributed.all_reduce(totals)

        used = batch_counts > 0
        self.counts += batch_counts
        if self.update_rule == "ema":
            eta = sums.new_full((int(used.sum()),), 1.0 - self.decay)  # [U]
        else:
            eta = (batch_counts[used] / self.counts[used]).to(sums.dtype)  # [U]
        means = sums[used] / batch_counts[used].unsqueeze(1).to(sums.dtype)
        self.prototypes[used] += eta.unsqueeze(1) * (means - self.prototypes[used])

        self.step += 1
        self.last_used[used] = self.step
        dead = (self.step - self.last_used) > self.reseed_after
        dead_count = dead.sum()
        num_dead = int(dead_count)  # the step's one host sync: re-seed or not
        if num_dead > 0:
            self.prototypes[dead] = self._random_frames(
                z, num_dead, generator, distributed
            )
            self.counts[dead] = 0.0
            self.last_used[dead] = self.step

        probs = batch_counts / batch_counts.sum()
        perplexity = torch.exp(-torch.special.xlogy(probs, probs).sum())
        return {
            "distortion": totals[0] / totals[1],
            "perplexity": perplexity,
            "used": used.sum(),
            "dead": dead_count,
            "reseeded": dead_count.clone(),
        }

    def cosine_logits(self, z, tau):
        """Cosine similarity of frames to the (detached) prototypes over tau.

        Arguments
        ---------
        z : torch.Tensor
            Frames [..., D].
        tau : float
            Temperature.

        Returns
        -------
        torch.Tensor
            Logits [..., K].

        Example
        -------
        >>> la = LocalAttributes(num_prototypes=3, dim=2)
        >>> la.cosine_logits(torch.randn(4, 2), tau=0.1).shape
        torch.Size([4, 3])
        """
        return prototype_cosine_logits(z, self.prototypes, tau, eps=self.eps)
