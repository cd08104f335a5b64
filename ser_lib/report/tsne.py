"""The paper's Fig. 2: utterance embeddings of a test session before and after the adapter.

"Before" is the frozen encoder alone: the cached encoder features of every test
utterance, mean-pooled over its frames. "After" is the trained fold model's SAP output
(WAP-Transformer then statistical attentive pooling) on the same features. Both are
projected to 2-D with scikit-learn's t-SNE.
"""

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.manifold import TSNE
from sklearn.metrics import silhouette_score
from speechbrain.dataio.dataloader import make_dataloader
from speechbrain.utils.logger import get_logger
from threadpoolctl import threadpool_limits

from ser_lib.dataio import feature_dataset
from ser_lib.features import FeatureCache
from ser_lib.inference import HPARAMS_FILE, EmotionRecognizer, read_saved_hparams
from ser_lib.models import mean_pool, valid_mask

__all__ = ["SessionEmbeddings", "class_separation", "embed_test_session", "tsne_2d"]

logger = get_logger(__name__)


@dataclass
class SessionEmbeddings:
    """Utterance embeddings of a fold's test set.

    Attributes
    ----------
    ids : list of str
        Utterance IDs.
    labels : numpy.ndarray
        True class indices [N].
    classes : list of str
        Class labels.
    encoder : numpy.ndarray
        Mean-pooled encoder features [N, D].
    adapter : numpy.ndarray
        SAP outputs of the trained model [N, E].
    encoder_frame_std : float
        Standard deviation of the encoder features over all test frames (to judge
        the spread of the mean-pooled vectors).
    """

    ids: list
    labels: np.ndarray
    classes: list
    encoder: np.ndarray
    adapter: np.ndarray
    encoder_frame_std: float


def embed_test_session(finetune_folder, batch_size=32, device="cpu"):
    """Embeds the test utterances of a trained fold from its feature cache.

    Arguments
    ---------
    finetune_folder : str or os.PathLike
        The fold's stage-2 folder (its ``hyperparams.yaml`` names the test CSV and
        the feature cache).
    batch_size : int
        Utterances per batch (padding does not change the embeddings).
    device : str
        Where the model runs.

    Returns
    -------
    SessionEmbeddings

    Example
    -------
    >>> from ser_lib.models import StatisticalAttentivePooling, WAPTransformer
    >>> root = getfixture("tmp_path")
    >>> # A feature cache of 6 utterances (8-d) and a stage-2 folder using it.
    >>> (root / "cache" / "feats").mkdir(parents=True)
    >>> rows = ["ID,num_frames,feat_path"]
    >>> for i in range(6):
    ...     feats = np.random.default_rng(i).normal(size=(5 + i, 8))
    ...     np.save(root / "cache" / "feats" / f"u{i}.npy", feats.astype(np.float16))
    ...     rows.append(f"u{i},{5 + i},feats/u{i}.npy")
    >>> _ = (root / "cache" / "index.csv").write_text("\\n".join(rows) + "\\n")
    >>> _ = (root / "cache" / "fingerprint.json").write_text("{}")
    >>> _ = (root / "test.csv").write_text(
    ...     "ID,emo\\n" + "".join(f"u{i},{['neu', 'sad'][i % 2]}\\n" for i in range(6)))
    >>> run = root / "fold1" / "finetune"
    >>> (run / "save" / "CKPT+x").mkdir(parents=True)
    >>> _ = (run / "save" / "CKPT+x" / "CKPT.yaml").write_text("unixtime: 1.0\\n")
    >>> modules = {
    ...     "backbone": WAPTransformer(input_dim=8, d_model=8, num_layers=1, nhead=2),
    ...     "sap": StatisticalAttentivePooling(8, num_heads=1),
    ...     "classifier": torch.nn.Linear(16, 2)}
    >>> for name, module in modules.items():
    ...     torch.save(module.state_dict(), run / "save" / "CKPT+x" / f"{name}.ckpt")
    >>> _ = (run / "hyperparams.yaml").write_text(
    ...     f"classes: [neu, sad]\\nencoder_hparams: enc.yaml\\n"
    ...     f"feature_folder: {root}/cache\\ntest_csv: {root}/test.csv\\n"
    ...     "backbone: !new:ser_lib.models.WAPTransformer\\n"
    ...     "  {input_dim: 8, d_model: 8, num_layers: 1, nhead: 2}\\n"
    ...     "sap: !new:ser_lib.models.StatisticalAttentivePooling\\n"
    ...     "  {input_dim: 8, num_heads: 1}\\n"
    ...     "classifier: !new:torch.nn.Linear [16, 2]\\n")
    >>> session = embed_test_session(run, batch_size=4)
    >>> session.encoder.shape, session.adapter.shape, session.labels.tolist()
    ((6, 8), (6, 16), [0, 1, 0, 1, 0, 1])
    """
    hparams = read_saved_hparams(f"{finetune_folder}/{HPARAMS_FILE}")
    cache = FeatureCache(hparams["feature_folder"])
    recognizer = EmotionRecognizer.from_hparams(
        finetune_folder, with_encoder=False, run_opts={"device": device}
    )
    dataset = feature_dataset(
        hparams["test_csv"], cache, recognizer.hparams.label_encoder
    )
    loader = make_dataloader(dataset, batch_size=batch_size)
    ids, labels, encoder, adapter = [], [], [], []
    total, squares, count = 0.0, 0.0, 0
    for batch in loader:
        feats, lengths = batch.feats  # [B, T, D], [B]
        ids += list(batch.id)
        labels.append(batch.emo_encoded.data.view(-1))
        encoder.append(mean_pool(feats, lengths))
        adapter.append(recognizer.embed_features(feats, lengths).cpu())
        valid = feats[valid_mask(lengths, feats.shape[1])]  # [frames, D]
        total += float(valid.sum())
        squares += float((valid.double() ** 2).sum())
        count += valid.numel()
    mean = total / count
    return SessionEmbeddings(
        ids=ids,
        labels=torch.cat(labels).numpy(),
        classes=recognizer.classes,
        encoder=torch.cat(encoder).numpy(),
        adapter=torch.cat(adapter).numpy(),
        encoder_frame_std=float(np.sqrt(max(squares / count - mean**2, 0.0))),
    )


def tsne_2d(points, perplexity=30.0, seed=0, num_threads=1):
    """2-D t-SNE (scikit-learn, PCA initialisation) of a point set.

    The perplexity is lowered to ``(N - 1) / 3`` for small sets (t-SNE needs it
    well below N).

    Arguments
    ---------
    points : numpy.ndarray
        [N, D], N >= 4.
    perplexity : float
        t-SNE perplexity.
    seed : int
        Random state of the optimisation.
    num_threads : int or None
        OpenMP threads of the Barnes-Hut gradient (None: scikit-learn's default,
        all cores). A test session has about a thousand utterances: one thread
        takes seconds, while many threads on a busy machine can take far longer.

    Returns
    -------
    numpy.ndarray
        [N, 2].

    Example
    -------
    >>> points = np.random.default_rng(0).normal(size=(12, 5))
    >>> tsne_2d(points).shape
    (12, 2)
    """
    points = np.asarray(points, dtype=np.float64)
    if points.shape[0] < 4:
        raise ValueError(f"t-SNE needs at least 4 points, got {points.shape[0]}")
    perplexity = min(perplexity, (points.shape[0] - 1) / 3)
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    with threadpool_limits(limits=num_threads, user_api="openmp"):
        return tsne.fit_transform(points)


def class_separation(points, labels):
    """Silhouette score (cosine) of the classes in an embedding space.

    Near 1: tight, separated classes; near 0: overlapping; negative: mixed. None
    when fewer than two classes, or no class with two utterances, are present.

    Arguments
    ---------
    points : numpy.ndarray
        [N, D].
    labels : array-like
        Class of every point [N].

    Returns
    -------
    float or None

    Example
    -------
    >>> points = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> round(class_separation(points, [0, 0, 1, 1]), 2)
    0.99
    >>> class_separation(points, [0, 0, 0, 0]) is None  # a single class
    True
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if len(classes) < 2 or len(classes) >= len(labels):
        return None
    if not np.isfinite(points).all() or np.allclose(points, points[0]):
        return None
    return float(silhouette_score(points, labels, metric="cosine"))
