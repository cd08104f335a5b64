"""Utterance-level heads of several tasks on shared encoder frames, with feature fusion.

* :class:`TaskBranch`: one task's path from the encoder frames to its embedding
  ``x^task``: an optional frame-wise adapter (a per-task bottleneck adapter), mean
  pooling over the valid frames, then a linear layer with no activation (so cosines
  between tasks' embeddings are not biased positive);
* the emotion classifier under three fusion settings, each giving ``[V, B, C]`` logits
  (V views of the emotion decision; the loss averages the views' cross-entropies and
  the prediction averages their softmaxes):

  - :class:`NoFusion`: ``W_e x^e`` (V = 1);
  - :class:`ConcatFusion`: ``W_cat [x^e; x^g; x^s]`` (V = 1);
  - :class:`SharedFusion`: the same ``W_e`` applied to ``x^e``, ``x^g`` and ``x^s``
    (V = 3): the "shared emotion classifier" fed with the gender and style features;
* :class:`MultiTaskHead`: the branches, the auxiliary tasks' classifiers and the
  emotion fusion together.

Authors
 * ser_lib contributors
"""

from typing import NamedTuple

import torch
from torch import nn

from ser_lib.models.pooling import mean_pool


class TaskBranch(nn.Module):
    """Encoder frames -> (adapter) -> masked mean pooling -> ``Linear(d -> e)``.

    Arguments
    ---------
    input_size : int
        Frame dimension d.
    embedding_size : int
        Embedding dimension e (the same for every task, so that embeddings compare).
    adapter : torch.nn.Module, optional
        Frame-wise module applied before pooling (e.g. a
        :class:`ser_lib.models.encoder_adapters.BottleneckAdapter`).

    Example
    -------
    >>> branch = TaskBranch(input_size=8, embedding_size=4)
    >>> branch(torch.randn(2, 5, 8), torch.tensor([1.0, 0.6])).shape
    torch.Size([2, 4])
    """

    def __init__(self, input_size, embedding_size=256, adapter=None):
        super().__init__()
        self.adapter = adapter if adapter is not None else nn.Identity()
        self.projection = nn.Linear(input_size, embedding_size)

    def forward(self, frames, lengths=None):
        """Returns the task embedding.

        Arguments
        ---------
        frames : torch.Tensor
            [B, T, d].
        lengths : torch.Tensor, optional
            Relative valid lengths [B].

        Returns
        -------
        torch.Tensor
            [B, e].
        """
        return self.projection(mean_pool(self.adapter(frames), lengths))


class ConcatFusion(nn.Module):
    """Emotion logits from the concatenated embeddings: ``W_cat [x^e; x^g; x^s]``.

    Arguments
    ---------
    embedding_size : int
        Embedding dimension e of each task.
    num_classes : int
        Number of emotion classes.
    tasks : list of str
        Embeddings concatenated, in this order.

    Example
    -------
    >>> fusion = ConcatFusion(4, 3, tasks=["emotion", "gender"])
    >>> fusion({"emotion": torch.randn(2, 4), "gender": torch.randn(2, 4)}).shape
    torch.Size([1, 2, 3])
    """

    def __init__(
        self, embedding_size, num_classes, tasks=("emotion", "gender", "style")
    ):
        super().__init__()
        self.tasks = list(tasks)
        self.classifier = nn.Linear(embedding_size * len(self.tasks), num_classes)

    def forward(self, embeddings):
        """Returns ``[1, B, C]`` logits.

        Arguments
        ---------
        embeddings : dict
            Task -> [B, e].

        Returns
        -------
        torch.Tensor
            [1, B, C].
        """
        joint = torch.cat([embeddings[task] for task in self.tasks], dim=-1)
        return self.classifier(joint).unsqueeze(0)


class SharedFusion(nn.Module):
    """One emotion classifier ``W_e`` applied to every task's embedding.

    Arguments
    ---------
    embedding_size : int
        Embedding dimension e.
    num_classes : int
        Number of emotion classes.
    tasks : list of str
        Embeddings classified (one view each), in this order.

    Example
    -------
    >>> fusion = SharedFusion(4, 3, tasks=["emotion", "gender", "style"])
    >>> x = {task: torch.randn(2, 4) for task in ["emotion", "gender", "style"]}
    >>> logits = fusion(x)
    >>> logits.shape, torch.equal(logits[1], fusion.classifier(x["gender"]))
    (torch.Size([3, 2, 3]), True)
    """

    def __init__(
        self, embedding_size, num_classes, tasks=("emotion", "gender", "style")
    ):
        super().__init__()
        self.tasks = list(tasks)
        self.classifier = nn.Linear(embedding_size, num_classes)

    def forward(self, embeddings):
        """Returns ``[V, B, C]`` logits, V = number of tasks.

        Arguments
        ---------
        embeddings : dict
            Task -> [B, e].

        Returns
        -------
        torch.Tensor
            [V, B, C].
        """
        return torch.stack([self.classifier(embeddings[task]) for task in self.tasks])


class NoFusion(SharedFusion):
    """Emotion logits from the emotion embedding only: ``W_e x^e``.

    A :class:`SharedFusion` over the main task alone (one view).

    Arguments
    ---------
    embedding_size : int
        Embedding dimension e.
    num_classes : int
        Number of emotion classes.
    main_task : str
        Key of the emotion embedding.

    Example
    -------
    >>> fusion = NoFusion(4, 3)
    >>> fusion({"emotion": torch.randn(2, 4), "gender": torch.randn(2, 4)}).shape
    torch.Size([1, 2, 3])
    """

    def __init__(self, embedding_size, num_classes, main_task="emotion"):
        super().__init__(embedding_size, num_classes, tasks=[main_task])
        self.main_task = main_task


class TaskOutputs(NamedTuple):
    """What :class:`MultiTaskHead` returns."""

    embeddings: dict
    """Task -> embedding [B, e]."""
    emotion_logits: torch.Tensor
    """[V, B, C] emotion logits, one view per fused embedding."""
    logits: dict
    """Auxiliary task -> logits [B, C_task]."""


class MultiTaskHead(nn.Module):
    """Task branches, auxiliary classifiers and the emotion fusion.

    Arguments
    ---------
    branches : dict
        Task -> :class:`TaskBranch` (must include every task the fusion reads).
    classifiers : dict
        Auxiliary task -> classifier on its embedding (e.g. ``Linear(e, 2)`` for
        gender); may be empty.
    fusion : torch.nn.Module
        :class:`NoFusion`, :class:`ConcatFusion` or :class:`SharedFusion`.

    Example
    -------
    >>> head = MultiTaskHead(
    ...     branches={task: TaskBranch(8, 4) for task in ["emotion", "gender"]},
    ...     classifiers={"gender": nn.Linear(4, 2)},
    ...     fusion=SharedFusion(4, 3, tasks=["emotion", "gender"]),
    ... )
    >>> out = head(torch.randn(2, 5, 8), torch.tensor([1.0, 0.4]))
    >>> out.emotion_logits.shape, out.logits["gender"].shape, sorted(out.embeddings)
    (torch.Size([2, 2, 3]), torch.Size([2, 2]), ['emotion', 'gender'])
    """

    def __init__(self, branches, classifiers, fusion):
        super().__init__()
        self.branches = nn.ModuleDict(branches)
        self.classifiers = nn.ModuleDict(classifiers)
        self.fusion = fusion
        unknown = sorted(set(self.classifiers) - set(self.branches))
        if unknown:
            raise ValueError(f"Classifiers {unknown} have no branch ({list(branches)})")

    def forward(self, frames, lengths=None):
        """Embeddings, fused emotion logits and auxiliary logits.

        Arguments
        ---------
        frames : torch.Tensor
            Encoder frames [B, T, d].
        lengths : torch.Tensor, optional
            Relative valid lengths [B].

        Returns
        -------
        TaskOutputs
        """
        embeddings = {
            task: branch(frames, lengths) for task, branch in self.branches.items()
        }
        logits = {
            task: head(embeddings[task]) for task, head in self.classifiers.items()
        }
        return TaskOutputs(embeddings, self.fusion(embeddings), logits)
