"""Heads and objectives on top of a trainable encoder.

* :class:`BiLSTMMeanPool`: a bidirectional LSTM over the valid frames, then the mean
  over the valid frames ([B, T, D] -> [B, 2H]).
* :class:`LinearP`: "two linear layers and one ReLU"; returns the output and the
  hidden (post-ReLU) vector.
* :class:`CosineClassifier`: cosines between an embedding and class weight rows
  (no bias).
* :class:`CrossEntropyObjective` and :class:`AMSoftmaxObjective`: a loss on the
  classifier's outputs plus the logits that predictions come from. AM-Softmax
  (``s (cos - m)`` on the target class) is a training loss only: predictions are
  ``softmax(s cos)``, margin-free.
"""

import torch
import torch.nn.functional as F
from speechbrain.nnet.losses import AngularMargin

from ser_lib.models.masking import valid_mask
from ser_lib.models.pooling import mean_pool

IGNORE_INDEX = -1
"""Label index that the objectives ignore (e.g. gender unknown)."""


class BiLSTMMeanPool(torch.nn.Module):
    """BiLSTM over the valid frames, then the masked mean: [B, T, D] -> [B, 2H].

    Arguments
    ---------
    input_size : int
        Frame dimension D.
    hidden_size : int
        Units per direction H.
    num_layers : int
        Stacked LSTM layers.

    Example
    -------
    >>> pool = BiLSTMMeanPool(4, 3)
    >>> x = torch.randn(2, 5, 4)
    >>> out = pool(x, torch.tensor([1.0, 0.6]))
    >>> out.shape
    torch.Size([2, 6])
    >>> x[1, 3:] = 100.0  # padding does not change the valid frames' output
    >>> torch.allclose(out, pool(x, torch.tensor([1.0, 0.6])))
    True
    """

    def __init__(self, input_size, hidden_size=256, num_layers=1):
        super().__init__()
        self.lstm = torch.nn.LSTM(
            input_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
        )
        self.output_size = 2 * hidden_size

    def forward(self, x, lengths):
        """Frames [B, T, D], relative lengths [B] -> pooled [B, 2H]."""
        batch, time, _ = x.shape
        counts = valid_mask(lengths, time, batch_size=batch).sum(dim=1).clamp_min(1)
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            x, counts.cpu(), batch_first=True, enforce_sorted=False
        )
        out, _ = self.lstm(packed)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(
            out, batch_first=True, total_length=time
        )
        return mean_pool(out, lengths)


class LinearP(torch.nn.Module):
    """``Linear -> ReLU -> output``; returns ``(output, hidden)``.

    Arguments
    ---------
    input_size : int
        Input dimension.
    hidden_size : int
        Hidden (embedding) dimension.
    output : torch.nn.Module
        The last layer (a ``torch.nn.Linear`` or a :class:`CosineClassifier`).

    Example
    -------
    >>> head = LinearP(8, 4, torch.nn.Linear(4, 6))
    >>> out, hidden = head(torch.randn(3, 8))
    >>> out.shape, hidden.shape, bool((hidden >= 0).all())
    (torch.Size([3, 6]), torch.Size([3, 4]), True)
    """

    def __init__(self, input_size, hidden_size, output):
        super().__init__()
        self.hidden = torch.nn.Linear(input_size, hidden_size)
        self.output = output

    def forward(self, x):
        """Input [..., input_size] -> (output [..., out], hidden [..., hidden_size])."""
        hidden = torch.relu(self.hidden(x))
        return self.output(hidden), hidden


class CosineClassifier(torch.nn.Module):
    """Cosine of an embedding with every class row of a weight matrix (no bias).

    Arguments
    ---------
    input_size : int
        Embedding dimension.
    n_classes : int
        Number of classes.

    Example
    -------
    >>> clf = CosineClassifier(3, 2)
    >>> cos = clf(torch.randn(4, 3))
    >>> cos.shape, bool((cos.abs() <= 1 + 1e-6).all())
    (torch.Size([4, 2]), True)
    """

    def __init__(self, input_size, n_classes):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(n_classes, input_size))
        torch.nn.init.xavier_uniform_(self.weight)

    def forward(self, x):
        """Embeddings [B, D] -> cosines [B, C]."""
        return F.linear(F.normalize(x, dim=-1), F.normalize(self.weight, dim=-1))


class CrossEntropyObjective:
    """Cross-entropy on logits; the predictions are their softmax.

    Example
    -------
    >>> objective = CrossEntropyObjective()
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    >>> round(float(objective.loss(logits, torch.tensor([0, -1]))), 4)
    0.1269
    >>> objective.logits(logits) is logits
    True
    """

    def loss(self, outputs, targets):
        """Mean CE over the targets that are not :data:`IGNORE_INDEX`."""
        return F.cross_entropy(outputs.float(), targets, ignore_index=IGNORE_INDEX)

    def logits(self, outputs):
        """Logits of the predictions."""
        return outputs


class AMSoftmaxObjective:
    """AM-Softmax (additive margin on the cosine) on :class:`CosineClassifier` outputs.

    ``L = -log( e^{s(cos_y - m)} / (e^{s(cos_y - m)} + sum_{j != y} e^{s cos_j}) )``,
    computed with SpeechBrain's ``AngularMargin`` (not ``AdditiveAngularMargin``,
    which is ArcFace). Predictions come from the margin-free ``s cos``.

    Arguments
    ---------
    margin : float
        m.
    scale : float
        s.

    Example
    -------
    >>> objective = AMSoftmaxObjective(margin=0.2, scale=30.0)
    >>> cos = torch.tensor([[0.5, 0.4]])
    >>> objective.logits(cos).tolist()  # no margin at prediction time
    [[15.0, 12.0]]
    >>> round(float(objective.loss(cos, torch.tensor([0]))), 4)  # s(0.5 - 0.2) vs s 0.4
    3.0486
    """

    def __init__(self, margin=0.2, scale=30.0):
        self.margin = margin
        self.scale = scale
        self.angular_margin = AngularMargin(margin=margin, scale=scale)

    def loss(self, outputs, targets):
        """Mean AM-Softmax loss over the targets that are not :data:`IGNORE_INDEX`."""
        keep = targets != IGNORE_INDEX
        cos = outputs.float()[keep]
        onehot = F.one_hot(targets[keep], cos.shape[-1]).to(cos.dtype)
        return F.cross_entropy(self.angular_margin(cos, onehot), targets[keep])

    def logits(self, outputs):
        """Margin-free scaled cosines."""
        return self.scale * outputs
