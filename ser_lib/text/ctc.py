"""Character CTC: vocabulary, loss, greedy decoding and word error rate.

* :func:`load_or_build_char_encoder` builds SpeechBrain's ``CTCTextEncoder`` over the
  characters of the training transcripts (blank at index 0, characters sorted, so the
  same transcripts give the same vocabulary) and saves it; a saved file is loaded
  instead, so a resumed or re-run fold uses the vocabulary its checkpoints were
  trained with (the encoder is also a checkpointer recoverable);
* :func:`encode_transcript` turns a normalised transcript into token indices;
* :func:`ctc_loss_fp32` is the CTC loss on float32 log-probabilities (also under
  bf16/fp16 autocast) with mean reduction (per-utterance loss divided by the target
  length, then averaged over the batch; HF's ``ctc_loss_reduction`` defaults to sum)
  and ``zero_infinity``;
* :func:`greedy_transcripts` decodes logits greedily into strings;
* :func:`word_error_rate` is the corpus-level WER of SpeechBrain's ``ErrorRateStats``;
* :func:`write_word_errors` writes its per-utterance hypotheses and errors to a CSV
  (an all-blank decoder shows as empty hypotheses, WER 100).

Authors
 * ser_lib contributors
"""

import csv
import os

import torch
from speechbrain.dataio.encoder import CTCTextEncoder
from speechbrain.decoders.ctc import ctc_greedy_decode
from speechbrain.nnet.losses import ctc_loss
from speechbrain.utils.distributed import ddp_barrier, if_main_process
from speechbrain.utils.logger import get_logger
from speechbrain.utils.metric_stats import ErrorRateStats

logger = get_logger(__name__)

BLANK_INDEX = 0
"""Index of the CTC blank in every vocabulary built here."""


def load_or_build_char_encoder(path, texts=()):
    """Loads the character vocabulary saved at ``path``, or builds and saves it.

    Arguments
    ---------
    path : str
        Label file (SpeechBrain's literal format).
    texts : iterable of str
        Training transcripts (already normalised); used only when ``path`` does
        not exist yet.

    Returns
    -------
    speechbrain.dataio.encoder.CTCTextEncoder
        Blank at :data:`BLANK_INDEX`, then the characters in sorted order.

    Raises
    ------
    ValueError
        If ``path`` does not exist and ``texts`` hold no character.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "chars.txt")
    >>> encoder = load_or_build_char_encoder(path, ["AB BA", "CAB"])
    >>> [encoder.ind2lab[i] for i in range(len(encoder))]
    ['<blank>', ' ', 'A', 'B', 'C']
    >>> len(load_or_build_char_encoder(path))  # loaded: texts not needed
    5
    """
    encoder = CTCTextEncoder()
    if if_main_process() and not os.path.exists(path):
        chars = sorted(set("".join(texts)))
        if not chars:
            raise ValueError(f"No character in the transcripts to build {path} from")
        encoder.add_blank()  # first label: index 0
        encoder.update_from_iterable(chars)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        encoder.save(path)
    ddp_barrier()
    encoder.load(path)
    if encoder.get_blank_index() != BLANK_INDEX:
        raise ValueError(f"{path}: the blank is not at index {BLANK_INDEX}")
    encoder.ignore_len()  # its size sets the CTC head's, not the other way round
    return encoder


def encode_transcript(encoder, text):
    """Token indices of a normalised transcript; characters outside the vocabulary
    (seen only in held-out transcripts) are dropped.

    Arguments
    ---------
    encoder : speechbrain.dataio.encoder.CTCTextEncoder
        The character vocabulary.
    text : str
        Normalised transcript (may be empty).

    Returns
    -------
    torch.Tensor
        Long tensor [len] of indices (no blank).

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "chars.txt")
    >>> encoder = load_or_build_char_encoder(path, ["AB"])
    >>> encode_transcript(encoder, "BAZ")
    tensor([2, 1])
    """
    known = [char for char in text if char in encoder.lab2ind]
    return torch.LongTensor(encoder.encode_sequence(known))


def ctc_loss_fp32(logits, tokens, frame_lens, token_lens, blank_index=BLANK_INDEX):
    """CTC loss on float32 log-probabilities with mean reduction.

    The log-softmax runs in float32 with autocast off, whatever the precision of
    ``logits``. Each utterance's loss is divided by its target length (at least 1),
    then averaged over the batch; infinite losses (input shorter than the target)
    count as zero.

    Arguments
    ---------
    logits : torch.Tensor
        [batch, frames, vocabulary].
    tokens : torch.Tensor
        Padded targets [batch, max_tokens] (no blank).
    frame_lens : torch.Tensor
        Relative valid frames [batch].
    token_lens : torch.Tensor
        Relative target lengths [batch] (0 for an empty transcript).
    blank_index : int
        Index of the blank.

    Returns
    -------
    torch.Tensor
        Scalar float32 loss.

    Example
    -------
    >>> logits = torch.zeros(1, 4, 3, dtype=torch.bfloat16)
    >>> loss = ctc_loss_fp32(logits, torch.tensor([[1, 2]]), torch.ones(1), torch.ones(1))
    >>> # uniform frames: 15 of the 3**4 paths give "12"; -log(15 / 81) / 2 tokens
    >>> loss.dtype, round(float(loss), 4)
    (torch.float32, 0.8432)
    """
    with torch.autocast(device_type=logits.device.type, enabled=False):
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        return ctc_loss(
            log_probs, tokens, frame_lens, token_lens, blank_index, reduction="mean"
        )


def greedy_transcripts(logits, frame_lens, encoder):
    """Greedy CTC decoding into strings (best class per frame, repeats merged, blanks
    removed). Outputs beyond the vocabulary's size are ignored.

    Arguments
    ---------
    logits : torch.Tensor
        [batch, frames, vocabulary].
    frame_lens : torch.Tensor
        Relative valid frames [batch].
    encoder : speechbrain.dataio.encoder.CTCTextEncoder
        The character vocabulary.

    Returns
    -------
    list of str
        One transcript per utterance.

    Example
    -------
    >>> import os, tempfile
    >>> encoder = load_or_build_char_encoder(
    ...     os.path.join(tempfile.mkdtemp(), "c.txt"), ["HI"]
    ... )
    >>> frames = torch.tensor([[1, 1, 0, 2, 2, 0]])  # H H <b> I I <b>
    >>> greedy_transcripts(torch.nn.functional.one_hot(frames, 3).float(), torch.ones(1), encoder)
    ['HI']
    """
    # A head may have more outputs than the vocabulary (sized for the alphabet):
    # only the vocabulary's symbols can be decoded.
    logits = logits.detach()[..., : len(encoder)].float()
    decoded = ctc_greedy_decode(logits, frame_lens, blank_id=encoder.get_blank_index())
    return ["".join(encoder.decode_ndim(indices)) for indices in decoded]


def append_word_errors(stats, ids, hypotheses, references):
    """Adds utterances to a SpeechBrain ``ErrorRateStats`` at the word level.

    Arguments
    ---------
    stats : speechbrain.utils.metric_stats.ErrorRateStats
        The accumulator.
    ids : list of str
        Utterance IDs.
    hypotheses : list of str
        Decoded transcripts.
    references : list of str
        Reference transcripts (normalised like the training targets).

    Example
    -------
    >>> stats = ErrorRateStats()
    >>> append_word_errors(stats, ["u1"], ["THE CAT SAT"], ["THE CAT SAT DOWN"])
    >>> stats.summarize("WER")
    25.0
    """
    stats.append(
        ids,
        predict=[text.split() for text in hypotheses],
        target=[text.split() for text in references],
    )


def word_error_rate(hypotheses, references):
    """Corpus-level word error rate in percent (SpeechBrain's ``ErrorRateStats``).

    Arguments
    ---------
    hypotheses : list of str
        Decoded transcripts.
    references : list of str
        Reference transcripts.

    Returns
    -------
    float
        100 * (substitutions + deletions + insertions) / reference words.

    Example
    -------
    >>> word_error_rate(["A B C", "D"], ["A X C", "D E"])
    40.0
    """
    stats = ErrorRateStats()
    ids = [str(i) for i in range(len(references))]
    append_word_errors(stats, ids, hypotheses, references)
    return float(stats.summarize("WER"))


WORD_ERROR_COLUMNS = [
    "ID",
    "reference",
    "hypothesis",
    "errors",
    "reference_words",
    "substitutions",
    "deletions",
    "insertions",
]
"""Columns of :func:`write_word_errors`' CSV."""


def write_word_errors(path, stats):
    """Writes the utterances of an ``ErrorRateStats`` (word level) to a CSV.

    One row per utterance: ID, reference, hypothesis (words joined by spaces; empty
    when greedy decoding gave only blanks), edits, reference words and the
    substitutions, deletions and insertions (see :data:`WORD_ERROR_COLUMNS`).

    Arguments
    ---------
    path : str
        The CSV to write (replaced atomically).
    stats : speechbrain.utils.metric_stats.ErrorRateStats
        Filled by :func:`append_word_errors`.

    Example
    -------
    >>> import os, tempfile
    >>> stats = ErrorRateStats()
    >>> append_word_errors(stats, ["u1", "u2"], ["THE CAT", ""], ["THE HAT", "HI"])
    >>> path = os.path.join(tempfile.mkdtemp(), "asr_hypotheses.csv")
    >>> write_word_errors(path, stats)
    >>> print(open(path).read().strip())
    ID,reference,hypothesis,errors,reference_words,substitutions,deletions,insertions
    u1,THE HAT,THE CAT,1,2,1,0,0
    u2,HI,,1,1,0,1,0
    """
    with open(path + ".tmp", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(WORD_ERROR_COLUMNS)
        for score in stats.scores:
            writer.writerow(
                [
                    score["key"],
                    " ".join(score["ref_tokens"]),
                    " ".join(score["hyp_tokens"]),
                    score["num_edits"],
                    score["num_ref_tokens"],
                    score["substitutions"],
                    score["deletions"],
                    score["insertions"],
                ]
            )
    os.replace(path + ".tmp", path)
