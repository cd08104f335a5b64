"""Transcribed manifests and transcript items of waveform datasets.

* :func:`prepare_transcribed`: runs a corpus's prepare function, then writes a copy of
  every manifest it wrote (``all.csv``, ``fold*/{train,valid,test}.csv``) with the
  normalised transcript as a ``wrd`` column into another folder (the prepare step of
  a recipe with an ASR task);
* :func:`fold_char_encoder`: the character vocabulary of a fold, built from its
  training transcripts only and saved (reloaded when it exists);
* :func:`add_transcript_items`: adds ``wrd`` (the normalised transcript) and
  ``tokens`` (its character indices) to a SpeechBrain ``DynamicItemDataset`` whose
  utterance IDs are in a transcribed manifest.

Authors
 * ser_lib contributors
"""

import glob
import os

from speechbrain.utils.data_pipeline import provides, takes
from speechbrain.utils.logger import get_logger

from ser_lib.data.manifest import read_manifest
from ser_lib.text.ctc import encode_transcript, load_or_build_char_encoder
from ser_lib.text.transcripts import (
    ENGLISH_ALPHABET,
    TEXT_COLUMN,
    write_transcribed_manifest,
)

logger = get_logger(__name__)


def prepare_transcribed(
    corpus_prepare,
    corpus_kwargs,
    read_transcripts,
    transcripts_source,
    save_folder,
    key="ID",
    missing="error",
    alphabet=ENGLISH_ALPHABET,
):
    """Prepares a corpus, then writes its manifests with transcripts.

    Arguments
    ---------
    corpus_prepare : callable
        The corpus's prepare function (e.g. ``iemocap_prepare.prepare_iemocap``);
        called as ``corpus_prepare(**corpus_kwargs)``; it writes its manifests
        into ``corpus_kwargs["save_folder"]``.
    corpus_kwargs : dict
        Its arguments.
    read_transcripts : callable
        ``read_transcripts(transcripts_source)`` -> ``{key value: raw text}`` (e.g.
        :func:`ser_lib.text.transcripts.read_iemocap_transcripts`).
    transcripts_source : str
        Folder or file of the transcripts.
    save_folder : str
        Where the transcribed manifests go, with the same relative paths.
    key : str
        Manifest column joined on (``ID``; ``dialog`` for EmoDB's text codes).
    missing : str
        ``"error"`` or ``"skip"`` (counted and logged) for an utterance without a
        transcript.
    alphabet : str
        Characters kept by the normalisation.

    Returns
    -------
    dict
        Relative manifest path -> number of utterances skipped.

    Example
    -------
    >>> import os, tempfile
    >>> from ser_lib.data.manifest import write_manifest
    >>> root = tempfile.mkdtemp()
    >>> def prepare(save_folder):
    ...     write_manifest([{"ID": "u1"}, {"ID": "u2"}],
    ...                    os.path.join(save_folder, "fold1", "train.csv"), columns=["ID"])
    >>> skipped = prepare_transcribed(
    ...     prepare, {"save_folder": os.path.join(root, "plain")},
    ...     lambda source: {"u1": "Hello!"}, None, os.path.join(root, "text"),
    ...     missing="skip")
    >>> skipped
    {'fold1/train.csv': 1}
    >>> print(open(os.path.join(root, "text", "fold1", "train.csv")).read().strip())
    ID,wrd
    u1,HELLO
    """
    corpus_prepare(**corpus_kwargs)
    source_folder = corpus_kwargs["save_folder"]
    transcripts = read_transcripts(transcripts_source)
    paths = sorted(
        glob.glob(os.path.join(source_folder, "**", "*.csv"), recursive=True)
    )
    if not paths:
        raise FileNotFoundError(
            f"The corpus preparation wrote no manifest in {source_folder}"
        )
    skipped = {}
    for path in paths:
        relative = os.path.relpath(path, source_folder)
        skipped[relative] = write_transcribed_manifest(
            path,
            os.path.join(save_folder, relative),
            transcripts,
            key=key,
            missing=missing,
            alphabet=alphabet,
        )
    logger.info(
        f"Transcribed manifests in {save_folder}; utterances skipped without a "
        f"transcript: {sum(skipped.values())}"
    )
    return skipped


def fold_char_encoder(train_csv, path):
    """The character vocabulary of a fold's training transcripts (saved at ``path``).

    Arguments
    ---------
    train_csv : str
        Transcribed training manifest (``wrd`` column).
    path : str
        Vocabulary file; loaded when it exists (resumed or re-run fold).

    Returns
    -------
    speechbrain.dataio.encoder.CTCTextEncoder

    Example
    -------
    >>> import os, tempfile
    >>> from ser_lib.data.manifest import write_manifest
    >>> folder = tempfile.mkdtemp()
    >>> csv = os.path.join(folder, "train.csv")
    >>> write_manifest([{"ID": "a", "wrd": "HI YO"}], csv, columns=["ID", "wrd"])
    >>> len(fold_char_encoder(csv, os.path.join(folder, "chars.txt")))  # blank + 5
    6
    """
    rows = read_manifest(train_csv, required_columns=["ID", TEXT_COLUMN])
    return load_or_build_char_encoder(path, [row[TEXT_COLUMN] for row in rows])


def add_transcript_items(dataset, csv_path, encoder):
    """Adds ``wrd`` and ``tokens`` to a dataset's dynamic items and output keys.

    Arguments
    ---------
    dataset : speechbrain.dataio.dataset.DynamicItemDataset
        Utterances keyed by ``ID``.
    csv_path : str
        Transcribed manifest holding every utterance of ``dataset``.
    encoder : speechbrain.dataio.encoder.CTCTextEncoder
        Character vocabulary (unknown characters are dropped from ``tokens``).

    Returns
    -------
    speechbrain.dataio.dataset.DynamicItemDataset
        The same dataset.

    Raises
    ------
    KeyError
        If an utterance of ``dataset`` has no transcript in ``csv_path``.

    Example
    -------
    >>> import os, tempfile
    >>> from speechbrain.dataio.dataset import DynamicItemDataset
    >>> from ser_lib.data.manifest import write_manifest
    >>> folder = tempfile.mkdtemp()
    >>> csv = os.path.join(folder, "train.csv")
    >>> write_manifest([{"ID": "a", "wrd": "HI"}], csv, columns=["ID", "wrd"])
    >>> encoder = fold_char_encoder(csv, os.path.join(folder, "chars.txt"))
    >>> dataset = DynamicItemDataset({"a": {}}, output_keys=["id"])
    >>> item = add_transcript_items(dataset, csv, encoder)[0]
    >>> item["id"], item["wrd"], item["tokens"].tolist()
    ('a', 'HI', [1, 2])
    """
    texts = {
        row["ID"]: row[TEXT_COLUMN]
        for row in read_manifest(csv_path, required_columns=["ID", TEXT_COLUMN])
    }
    missing = [utt for utt in dataset.data_ids if utt not in texts]
    if missing:
        raise KeyError(
            f"{len(missing)} utterances have no transcript in {csv_path} "
            f"(first: {missing[:3]})"
        )

    @takes("id")
    @provides(TEXT_COLUMN, "tokens")
    def text_pipeline(utt_id):
        text = texts[utt_id]
        yield text
        yield encode_transcript(encoder, text)

    keys = list(dataset.pipeline.output_mapping)
    dataset.add_dynamic_item(text_pipeline)
    dataset.set_output_keys(keys + [TEXT_COLUMN, "tokens"])
    return dataset
