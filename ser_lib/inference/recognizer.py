"""The emotion recognizer: frozen encoder → WAP-Transformer → SAP → classifier → softmax,
on raw audio, loaded from a trained stage-2 folder or an exported model folder (see
:mod:`ser_lib.inference`)."""

import json
from pathlib import Path
from typing import NamedTuple

import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.inference.interfaces import Pretrained
from speechbrain.utils.logger import get_logger

from ser_lib.audio import AudioError, read_audio
from ser_lib.inference.export import checked_label_encoder
from ser_lib.inference.fingerprint import check_encoder_fingerprint
from ser_lib.inference.hparams import as_mapping, inference_hparams_yaml
from ser_lib.inference.layout import (
    HPARAMS_FILE,
    MODEL_MODULES,
    SAVE_FOLDER,
    ModelFolderError,
)
from ser_lib.inference.training_folder import (
    is_trained_folder,
    read_trained_model,
    stage2_hint,
)

__all__ = ["EmotionPrediction", "EmotionRecognizer"]

logger = get_logger(__name__)


class EmotionPrediction(NamedTuple):
    """The prediction for one utterance.

    Attributes
    ----------
    label : str
        The most probable class.
    probability : float
        Its probability.
    probabilities : dict
        Every class -> probability, in the classifier's order.
    index : int
        The index of ``label``.

    Example
    -------
    >>> p = EmotionPrediction("sad", 0.75, {"neu": 0.25, "sad": 0.75}, 1)
    >>> p.label, p._asdict()["probability"]
    ('sad', 0.75)
    """

    label: str
    probability: float
    probabilities: dict
    index: int


class EmotionRecognizer(Pretrained):
    """Speech emotion recognition with a trained adapter model, on raw audio.

    ``encoder`` (frozen, optional) → ``backbone`` (WAP-Transformer) → ``sap``
    (statistical attentive pooling) → ``classifier`` (linear) → softmax. Build it
    with :meth:`from_hparams`; the constructor is SpeechBrain's ``Pretrained`` one.

    Arguments
    ---------
    modules : dict
        ``encoder`` (a ``ser_lib.encoders.FrozenEncoder``; may be left out to work on
        encoder features only), ``backbone``, ``sap``, ``classifier``.
    hparams : dict
        ``label_encoder`` (CategoricalEncoder), ``float16_features`` (bool: round the
        encoder features to float16 as the training feature cache did),
        ``min_frames`` (int: the fewest encoder frames a file may give).
    run_opts : dict, optional
        SpeechBrain run options, e.g. ``{"device": "cuda:0"}``.
    freeze_params : bool
        Freeze the parameters and switch to eval mode (as ``Pretrained``).

    Example
    -------
    >>> from ser_lib.dataio import build_label_encoder
    >>> from ser_lib.encoders import FbankEncoder
    >>> from ser_lib.models import StatisticalAttentivePooling, WAPTransformer
    >>> modules = {
    ...     "encoder": FbankEncoder(n_mels=8, stack=2),
    ...     "backbone": WAPTransformer(input_dim=16, d_model=8, num_layers=1, nhead=2,
    ...                                max_frames=100),
    ...     "sap": StatisticalAttentivePooling(8, num_heads=2),
    ...     "classifier": torch.nn.Linear(32, 3)}
    >>> hparams = {"label_encoder": build_label_encoder(["neu", "hap", "sad"]),
    ...            "float16_features": True, "min_frames": 1}
    >>> recognizer = EmotionRecognizer(modules, hparams, run_opts={"device": "cpu"})
    >>> wavs = torch.randn(2, 16000) * 0.1
    >>> probs, score, index, labels = recognizer.classify_batch(
    ...     wavs, torch.tensor([1.0, 0.25]))
    >>> probs.shape, len(labels), bool(torch.allclose(probs.sum(dim=1), torch.ones(2)))
    (torch.Size([2, 3]), 2, True)
    >>> alone, _, _, _ = recognizer.classify_batch(wavs[1:, :4000])
    >>> bool(torch.allclose(alone[0], probs[1], atol=1e-5))  # padding changes nothing
    True
    >>> recognizer.encode_batch(wavs).shape  # SAP embeddings
    torch.Size([2, 32])
    """

    MODULES_NEEDED = ["backbone", "sap", "classifier"]
    HPARAMS_NEEDED = ["label_encoder", "float16_features", "min_frames"]

    def __init__(self, modules=None, hparams=None, run_opts=None, freeze_params=True):
        missing = [name for name in self.MODULES_NEEDED if name not in (modules or {})]
        if missing:
            raise ValueError(f"EmotionRecognizer needs the modules {missing}")
        super().__init__(
            modules=modules,
            hparams=hparams,
            run_opts=run_opts,
            freeze_params=freeze_params,
        )

    @classmethod
    def from_hparams(
        cls,
        source,
        hparams_file=HPARAMS_FILE,
        overrides=None,
        encoder_overrides=None,
        encoder_hparams=None,
        recipe_dir=None,
        with_encoder=True,
        run_opts=None,
        freeze_params=True,
    ):
        """Loads a trained stage-2 folder or an exported model folder.

        Arguments
        ---------
        source : str or os.PathLike
            A trained stage-2 folder or a folder written by :func:`export_model`
            (local folders only: nothing is downloaded).
        hparams_file : str
            The inference hparams file of an exported folder.
        overrides : dict, optional
            HyperPyYAML overrides of the inference hparams (e.g.
            ``{"float16_features": False}``).
        encoder_overrides : dict or str, optional
            Merged over the encoder overrides of training (e.g.
            ``{"encoder_source": "/models/hubert-large-ls960-ft"}``).
        encoder_hparams : str or os.PathLike, optional
            Trained folders: the encoder hparams file (default: found by
            :func:`find_encoder_hparams`).
        recipe_dir : str or os.PathLike, optional
            Trained folders: the recipe folder of training.
        with_encoder : bool
            Build the encoder. Without it only the methods on encoder features
            (:meth:`embed_features`, :meth:`classify_features`) work.
        run_opts : dict, optional
            SpeechBrain run options, e.g. ``{"device": "cuda"}``.
        freeze_params : bool
            As ``Pretrained``.

        Returns
        -------
        EmotionRecognizer
        """
        source = Path(source).resolve()
        if is_trained_folder(source):
            model = read_trained_model(
                source, encoder_hparams, recipe_dir, find_encoder=with_encoder
            )
            text = inference_hparams_yaml(model)
            paths = {
                "encoder_hparams": _optional_path(model.encoder_hparams),
                "weights_folder": str(model.checkpoint),
                "label_encoder_file": _optional_path(model.label_encoder_file),
                "encoder_fingerprint_file": None,
            }
            fingerprint = model.encoder_fingerprint
            origin = f"{source} ({model.checkpoint.name})"
        elif (source / hparams_file).is_file():
            text = (source / hparams_file).read_text(encoding="utf-8")
            paths, fingerprint, origin = {}, None, str(source)
        elif not source.exists():
            raise ModelFolderError(f"The model folder {source} does not exist")
        else:
            raise ModelFolderError(
                f"{source} is neither a trained stage-2 folder (with {HPARAMS_FILE} "
                f"and {SAVE_FOLDER}/CKPT+*) nor an exported model folder (with "
                f"{hparams_file}){stage2_hint(source)}"
            )
        hparams = load_hyperpyyaml(
            text, {**paths, **(overrides or {}), "model_folder": str(source)}
        )
        hparams["encoder_overrides"] = {
            **as_mapping(hparams["encoder_overrides"], origin),
            **as_mapping(encoder_overrides, "encoder_overrides"),
        }
        if fingerprint is None and hparams["encoder_fingerprint_file"] is not None:
            fingerprint_file = Path(hparams["encoder_fingerprint_file"])
            with open(fingerprint_file, encoding="utf-8") as f:
                fingerprint = json.load(f)

        modules = dict(hparams["modules"])
        _load_weights(modules, Path(hparams["weights_folder"]), origin)
        if with_encoder:
            encoder = hparams["encoder"](overrides=hparams["encoder_overrides"])
            if fingerprint is not None:
                check_encoder_fingerprint(encoder, fingerprint, origin)
            modules["encoder"] = encoder
        label_file = hparams["label_encoder_file"]
        hparams["label_encoder"] = checked_label_encoder(
            None if label_file is None else Path(label_file), hparams["classes"]
        )
        logger.info("Loaded the emotion recognizer of %s", origin)
        return cls(
            modules=modules,
            hparams=hparams,
            run_opts=run_opts,
            freeze_params=freeze_params,
        )

    @property
    def classes(self):
        """The class labels, in the order of the classifier outputs (list of str)."""
        encoder = self.hparams.label_encoder
        return [encoder.ind2lab[i] for i in range(len(encoder))]

    @property
    def sample_rate(self):
        """The sample rate the encoder expects, Hz."""
        return self._encoder().sample_rate

    def _encoder(self):
        if "encoder" not in self.mods:
            raise RuntimeError(
                "This EmotionRecognizer was loaded without its encoder "
                "(with_encoder=False): it works on encoder features only"
            )
        return self.mods.encoder

    def load_audio(self, path, savedir=None):
        """Reads an audio file as a mono waveform at the encoder's sample rate.

        Any sample rate and channel count (see :func:`ser_lib.audio.read_audio`,
        which also refuses truncated files and non-finite samples). Files that give
        fewer than ``min_frames`` encoder frames are refused.

        Arguments
        ---------
        path : str or os.PathLike
            The audio file (local).
        savedir : None
            Unused (``Pretrained`` signature; nothing is downloaded).

        Returns
        -------
        torch.Tensor
            The waveform [samples] (on the CPU).

        Raises
        ------
        ser_lib.audio.AudioError
            Unreadable, empty, too short or non-finite audio; the message names the
            file.
        """
        wav = read_audio(path, sample_rate=self.sample_rate)
        frames = self._encoder().num_frames(wav.shape[0])
        if frames < self.hparams.min_frames:
            raise AudioError(
                f"Audio file {path} is too short: {wav.shape[0] / self.sample_rate:.3f}"
                f" s give {frames} encoder frame(s), {self.hparams.min_frames} needed"
            )
        return wav

    def encode_features(self, wavs, wav_lens=None):
        """Encoder features of a padded batch, as the model saw them in training.

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms at :attr:`sample_rate`, [batch, samples] (or [samples]).
        wav_lens : torch.Tensor, optional
            Relative lengths [batch] (default: all 1.0).

        Returns
        -------
        feats : torch.Tensor
            [batch, frames, dim], float32 (rounded to float16 values when
            ``float16_features``); zero on padded frames.
        feat_lens : torch.Tensor
            Relative lengths [batch].
        """
        wavs, wav_lens = self._batch(wavs, wav_lens)
        with torch.no_grad():
            feats, feat_lens = self._encoder()(wavs, wav_lens)  # [B, T, D]
        if self.hparams.float16_features:
            feats = feats.to(torch.float16)
            if not torch.isfinite(feats).all():
                raise ValueError(
                    "The encoder output is not finite in float16 (NaN, or beyond "
                    f"+-{torch.finfo(torch.float16).max:.0f})"
                )
            feats = feats.float()
        return feats, feat_lens

    def _batch(self, wavs, wav_lens):
        """Adds the batch dimension and default lengths; moves to the device."""
        if wavs.dim() == 1:
            wavs = wavs.unsqueeze(0)
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0])
        return wavs.float().to(self.device), wav_lens.float().to(self.device)

    def embed_features(self, feats, feat_lens=None):
        """Utterance embeddings (SAP output) of encoder features.

        Arguments
        ---------
        feats : torch.Tensor
            Encoder features [batch, frames, dim] (e.g. from the feature cache).
        feat_lens : torch.Tensor, optional
            Relative lengths [batch] (default: all 1.0).

        Returns
        -------
        torch.Tensor
            [batch, 2 * d_model * heads].
        """
        feats, feat_lens = self._batch_feats(feats, feat_lens)
        with torch.no_grad():
            frames = self.mods.backbone(feats, feat_lens)  # [B, T, d_model]
            return self.mods.sap(frames, feat_lens)

    def _batch_feats(self, feats, feat_lens):
        if feat_lens is None:
            feat_lens = torch.ones(feats.shape[0])
        return feats.float().to(self.device), feat_lens.float().to(self.device)

    def classify_features(self, feats, feat_lens=None):
        """Class probabilities of encoder features.

        Arguments
        ---------
        feats : torch.Tensor
            Encoder features [batch, frames, dim].
        feat_lens : torch.Tensor, optional
            Relative lengths [batch].

        Returns
        -------
        torch.Tensor
            Probabilities [batch, classes].
        """
        embeddings = self.embed_features(feats, feat_lens)
        with torch.no_grad():
            logits = self.mods.classifier(embeddings)  # [B, C]
        if logits.shape[-1] != len(self.hparams.label_encoder):
            raise ValueError(
                f"The classifier has {logits.shape[-1]} outputs but the label "
                f"encoder {len(self.hparams.label_encoder)} classes"
            )
        return logits.float().softmax(dim=-1)

    def encode_batch(self, wavs, wav_lens=None):
        """Utterance embeddings (SAP output) of a padded batch of waveforms.

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms at :attr:`sample_rate`, [batch, samples].
        wav_lens : torch.Tensor, optional
            Relative lengths [batch].

        Returns
        -------
        torch.Tensor
            [batch, 2 * d_model * heads].
        """
        return self.embed_features(*self.encode_features(wavs, wav_lens))

    def classify_batch(self, wavs, wav_lens=None):
        """Classifies a padded batch of waveforms.

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms at :attr:`sample_rate` (mono), [batch, samples].
        wav_lens : torch.Tensor, optional
            Relative lengths [batch] (SpeechBrain convention; default all 1.0).

        Returns
        -------
        probs : torch.Tensor
            Class probabilities [batch, classes] (``EncoderClassifier`` returns
            log-probabilities here; these are probabilities).
        score : torch.Tensor
            The probability of the best class, [batch].
        index : torch.Tensor
            The best class, [batch].
        labels : list of str
            Its label.
        """
        probs = self.classify_features(*self.encode_features(wavs, wav_lens))
        score, index = probs.max(dim=-1)
        labels = [self.hparams.label_encoder.ind2lab[int(i)] for i in index]
        return probs, score, index, labels

    def classify_file(self, path):
        """Classifies one audio file (any sample rate, any channels).

        Arguments
        ---------
        path : str or os.PathLike
            The audio file.

        Returns
        -------
        EmotionPrediction
            Label, its probability, every class probability.

        Raises
        ------
        ser_lib.audio.AudioError
            Unreadable, empty or too short audio.
        """
        wav = self.load_audio(path)
        probs, _, index, labels = self.classify_batch(wav.unsqueeze(0))
        values = probs[0].tolist()
        return EmotionPrediction(
            label=labels[0],
            probability=values[int(index[0])],
            probabilities=dict(zip(self.classes, values, strict=True)),
            index=int(index[0]),
        )

    def forward(self, wavs, wav_lens=None):
        """Runs :meth:`classify_batch`."""
        return self.classify_batch(wavs, wav_lens)


def _load_weights(modules, folder, origin):
    """Loads ``<folder>/<name>.ckpt`` (state dicts, strictly) into the model modules."""
    for name in MODEL_MODULES:
        path = folder / f"{name}.ckpt"
        if not path.is_file():
            raise ModelFolderError(f"The weights file {path} of {origin} is missing")
        state = torch.load(path, map_location="cpu", weights_only=True)
        modules[name].load_state_dict(state)


def _optional_path(path):
    return None if path is None else str(path)
