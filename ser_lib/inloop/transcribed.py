"""Waveform datasets with transcripts, for stages with a CTC task.

:func:`transcribed_dataio` is the in-loop dataio (:func:`ser_lib.inloop.data.inloop_dataio`)
plus, for every split, the items ``wrd`` (normalised transcript) and ``tokens``
(character indices), and the fold's character vocabulary built from its training
transcripts (:func:`ser_lib.text.data.fold_char_encoder`).
"""

from ser_lib.inloop.data import inloop_dataio
from ser_lib.text.data import add_transcript_items, fold_char_encoder


def transcribed_dataio(hparams):
    """The fold's waveform datasets with transcripts (``dataio`` of a YAML).

    Reads what :func:`ser_lib.inloop.data.inloop_dataio` reads (``train_csv`` etc.
    must be transcribed manifests), ``char_vocabulary_file`` (where the fold's
    vocabulary is saved) and ``ctc_outputs`` (output units of the CTC head). Sets
    ``hparams["char_encoder"]``.

    Returns
    -------
    dict
        As :func:`ser_lib.inloop.data.inloop_dataio`, plus ``char_encoder``.

    Raises
    ------
    ValueError
        If training crops are on (``train_max_seconds``: CTC targets are whole
        utterances) or the vocabulary is larger than the CTC head.
    """
    if hparams["train_max_seconds"] is not None:
        raise ValueError(
            "A CTC task needs whole utterances: set train_max_seconds: null "
            f"(got {hparams['train_max_seconds']})"
        )
    datasets = inloop_dataio(hparams)
    encoder = fold_char_encoder(hparams["train_csv"], hparams["char_vocabulary_file"])
    if len(encoder) > hparams["ctc_outputs"]:
        raise ValueError(
            f"The vocabulary {hparams['char_vocabulary_file']} has {len(encoder)} "
            f"symbols but the CTC head {hparams['ctc_outputs']} outputs"
        )
    for split in ("train", "valid", "test"):
        if datasets[split] is not None:
            add_transcript_items(datasets[split], hparams[f"{split}_csv"], encoder)
    hparams["char_encoder"] = encoder
    datasets["char_encoder"] = encoder
    return datasets
