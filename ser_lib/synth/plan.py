"""Planning the synthetic mini IEMOCAP: every random choice, before any audio.

From the design (:mod:`ser_lib.synth.design`) and one ``numpy.random.Generator``,
:func:`plan_corpus` draws the dialogs, turns, labels, texts, per-utterance prosody
(the eSpeak NG request), noise, timing, V/A/D values and evaluator lines. Rendering
(:mod:`ser_lib.synth.render`) and writing (:mod:`ser_lib.synth.layout`) only follow
the plan, so the corpus is a function of the seed.

Authors
 * ser_lib contributors
"""

from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np

from ser_lib.synth.design import (
    ATTRIBUTE_RATING_SD,
    CATEGORY_NAMES,
    DISSENT_PROB,
    EVALUATOR_NOTES,
    EVALUATORS,
    IMPRO_DIALOGS,
    MAX_SEED,
    SCRIPT_DIALOGS,
    SENTENCES,
    Prosody,
)
from ser_lib.synth.espeak import (
    PITCH_RANGE,
    PITCH_RANGE_RANGE,
    RATE_RANGE,
    VOLUME_RANGE,
    SynthesisRequest,
    emphasize_word,
)


@dataclass(frozen=True)
class PlannedUtterance:
    """Everything planned for one utterance before synthesis.

    Attributes
    ----------
    session, dialog, utt_id, gender, style, label, text
        Where the utterance is in the release, who speaks it, its label and text.
    request : SynthesisRequest
        The eSpeak NG request (voice, prosody, SSML, seed).
    snr_db, noise_seed : float, int
        Background noise level and seed.
    lead_s, trail_s, gap_s : float
        Silence before and after the speech, and the gap before the turn (s).
    vad : tuple
        (valence, activation, dominance) written to EmoEvaluation.
    evaluations : tuple of str
        The evaluator lines.

    Example
    -------
    >>> from dataclasses import fields
    >>> [field.name for field in fields(PlannedUtterance)][:4]
    ['session', 'dialog', 'utt_id', 'gender']
    """

    session: int
    dialog: str
    utt_id: str
    gender: str
    style: str
    label: str
    text: str
    request: SynthesisRequest
    snr_db: float
    noise_seed: int
    lead_s: float
    trail_s: float
    gap_s: float
    vad: tuple
    evaluations: tuple


def _largest_remainder_counts(probs, total):
    """Splits ``total`` items into integer counts proportional to ``probs`` (dict order)."""
    labels = list(probs)
    p = np.array([probs[k] for k in labels], dtype=np.float64)
    if total < 0 or np.any(p < 0) or p.sum() <= 0:
        raise ValueError(f"Invalid label probabilities {probs} or total {total}.")
    exact = p / p.sum() * total
    counts = np.floor(exact).astype(int)
    # Stable sort: ties go to the label listed first.
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return dict(zip(labels, counts.tolist(), strict=True))


def _dialog_names(session, num_impro, num_script):
    """Dialog names of one session, alternating the F/M lead like the release."""
    if num_impro > len(IMPRO_DIALOGS) or num_script > len(SCRIPT_DIALOGS):
        raise ValueError(
            f"At most {len(IMPRO_DIALOGS)} improvised and {len(SCRIPT_DIALOGS)} scripted "
            f"dialogs per session, got {num_impro} and {num_script}."
        )
    names = []
    for catalog, count, style in (
        (IMPRO_DIALOGS, num_impro, "impro"),
        (SCRIPT_DIALOGS, num_script, "script"),
    ):
        for i in range(count):
            lead = "FM"[(i + session - 1) % 2]
            names.append((f"Ses{session:02d}{lead}_{catalog[i]}", style))
    return names


def _clip(value, bounds):
    return int(round(min(max(value, bounds[0]), bounds[1])))


def _perturb(rng, base, offset, spread):
    """Returns ``base + offset + N(0, spread)`` field by field, as a Prosody."""
    fields = zip(
        asdict(base).values(),
        asdict(offset).values(),
        asdict(spread).values(),
        strict=True,
    )
    return Prosody(*(b + o + rng.normal(0, sd) for b, o, sd in fields))


def _turns(rng, num_turns, switch_prob):
    """Speaker genders of the turns of one dialog ("F"/"M"), starting at random."""
    genders = [str(rng.choice(["F", "M"]))]
    for _ in range(num_turns - 1):
        other = "M" if genders[-1] == "F" else "F"
        genders.append(other if rng.random() < switch_prob else genders[-1])
    return genders


def _session_labels(rng, label_probs, per_session, num_sessions):
    """Labels of each session: corpus-level quotas dealt round-robin, then shuffled.

    Every session gets the same share of each label (up to one utterance).
    """
    counts = _largest_remainder_counts(label_probs, per_session * num_sessions)
    pooled = [label for label, n in counts.items() for _ in range(n)]
    sessions = [pooled[i::num_sessions] for i in range(num_sessions)]
    for labels in sessions:
        rng.shuffle(labels)
    return sessions


def _draw_vad(rng, means, spread):
    """(valence, activation, dominance) around ``means``, rounded to 0.5 in [1, 5]."""
    return tuple(
        float(np.clip(np.round(2 * (m + rng.normal(0, spread))) / 2, 1.0, 5.0))
        for m in means
    )


def _evaluations(rng, label, gender, vad):
    """Evaluator lines (categorical ``C-`` and attribute ``A-``) of one utterance.

    Two external evaluators and the speaker's self-evaluation (``F1``/``M1``); all agree
    on the label except, with probability ``DISSENT_PROB``, one; ``xxx`` gets three
    different categories (no majority).
    """
    named = [k for k in CATEGORY_NAMES if k != "oth"]
    self_rater = f"{gender}1"
    raters = [str(e) for e in sorted(rng.choice(EVALUATORS, 2, replace=False))]
    raters.append(self_rater)
    if label == "xxx":
        cats = [CATEGORY_NAMES[k] for k in rng.choice(named, 3, replace=False)]
    else:
        cats = [CATEGORY_NAMES[label]] * 3
        dissent = CATEGORY_NAMES[str(rng.choice(named))]
        if rng.random() < DISSENT_PROB:
            cats[int(rng.integers(0, 3))] = dissent
    lines = []
    for rater, cat in zip(raters, cats, strict=True):
        note = EVALUATOR_NOTES[int(rng.integers(0, len(EVALUATOR_NOTES)))]
        lines.append(f"C-{rater}:\t{cat};\t({note})")
    for rater in (raters[1], self_rater):
        v, a, d = (
            int(np.clip(round(x + rng.normal(0, ATTRIBUTE_RATING_SD)), 1, 5))
            for x in vad
        )
        lines.append(f"A-{rater}:\tval {v}; act {a}; dom  {d};\t()")
    return tuple(lines)


def plan_corpus(rng, voices, dialogs_per_style, utterances_per_dialog, **knobs):
    """Draws the corpus's random choices from ``rng``.

    Arguments
    ---------
    rng : numpy.random.Generator
        The only source of randomness.
    voices : sequence of (str, str)
        (female, male) voice of each session.
    dialogs_per_style : (int, int)
        Improvised and scripted dialogs per session.
    utterances_per_dialog : int
        Turns per dialog.
    **knobs
        The prosody, label, V/A/D, noise and timing arguments of
        :func:`ser_lib.synth.mini_iemocap.make_mini_iemocap`.

    Returns
    -------
    list of list of PlannedUtterance
        The dialogs, in session order.

    Example
    -------
    >>> from ser_lib.synth import design
    >>> knobs = dict(
    ...     label_probs=design.DEFAULT_LABEL_PROBS,
    ...     base_prosody=design.DEFAULT_BASE_PROSODY,
    ...     speaker_spread=design.DEFAULT_SPEAKER_SPREAD,
    ...     emotion_offsets=design.DEFAULT_EMOTION_OFFSETS,
    ...     jitter=design.DEFAULT_JITTER,
    ...     emphasis_probs=design.DEFAULT_EMPHASIS_PROBS,
    ...     vad_means=design.DEFAULT_VAD_MEANS,
    ...     vad_jitter=0.4,
    ...     snr_db_range=(10.0, 30.0),
    ...     silence_range_s=(0.05, 0.25),
    ...     turn_gap_range_s=(0.2, 1.5),
    ...     turn_switch_prob=0.8,
    ... )
    >>> plan = plan_corpus(np.random.default_rng(0), design.DEFAULT_VOICES[:2], (1, 1), 3,
    ...                    **knobs)
    >>> [len(dialog) for dialog in plan], sorted({u.session for d in plan for u in d})
    ([3, 3, 3, 3], [1, 2])
    """
    label_probs = knobs["label_probs"]
    unknown = set(label_probs) - set(CATEGORY_NAMES) - {"xxx"}
    if unknown:
        raise ValueError(
            f"Unknown labels {sorted(unknown)}; known: {sorted(CATEGORY_NAMES)}, xxx."
        )
    for table in ("emotion_offsets", "vad_means"):
        missing = set(label_probs) - set(knobs[table])
        if missing:
            raise ValueError(f"Labels {sorted(missing)} are missing from {table}.")
    num_sessions = len(voices)
    no_offset = Prosody(0, 0, 0, 0)
    speakers = {
        (s, g): _perturb(rng, knobs["base_prosody"], no_offset, knobs["speaker_spread"])
        for s in range(1, num_sessions + 1)
        for g in "FM"
    }
    # A script has the same text in every session, as in the release.
    scripts = {}
    for name in SCRIPT_DIALOGS:
        scripts.setdefault(name.split("_")[0], rng.permutation(len(SENTENCES)))
    dialogs = [
        (s, name, style, _turns(rng, utterances_per_dialog, knobs["turn_switch_prob"]))
        for s in range(1, num_sessions + 1)
        for name, style in _dialog_names(s, *dialogs_per_style)
    ]
    per_session = sum(dialogs_per_style) * utterances_per_dialog
    labels = [
        iter(x) for x in _session_labels(rng, label_probs, per_session, num_sessions)
    ]

    plan = []
    for s, name, style, genders in dialogs:
        numbering = Counter()
        if style == "script":
            order = scripts[name.split("_")[1]]
            part = int(name.split("_")[-1][0])  # "1b" -> 1
            texts = [
                SENTENCES[order[((part - 1) * len(genders) + k) % len(SENTENCES)]]
                for k in range(len(genders))
            ]
        else:
            texts = [
                SENTENCES[i] for i in rng.integers(0, len(SENTENCES), len(genders))
            ]
        utterances = []
        for gender, text in zip(genders, texts, strict=True):
            label = next(labels[s - 1])
            utt_id = f"{name}_{gender}{numbering[gender]:03d}"
            numbering[gender] += 1
            prosody = _perturb(
                rng,
                speakers[s, gender],
                knobs["emotion_offsets"][label],
                knobs["jitter"],
            )
            ssml = bool(rng.random() < knobs["emphasis_probs"].get(label, 0.0))
            word = int(rng.integers(0, len(text.split())))
            request = SynthesisRequest(
                text=emphasize_word(text, word) if ssml else text,
                voice=voices[s - 1]["FM".index(gender)],
                rate=_clip(prosody.rate, RATE_RANGE),
                pitch=_clip(prosody.pitch, PITCH_RANGE),
                pitch_range=_clip(prosody.pitch_range, PITCH_RANGE_RANGE),
                volume=_clip(prosody.volume, VOLUME_RANGE),
                ssml=ssml,
                rand_seed=int(rng.integers(0, MAX_SEED)),
            )
            vad = _draw_vad(rng, knobs["vad_means"][label], knobs["vad_jitter"])
            utterances.append(
                PlannedUtterance(
                    session=s,
                    dialog=name,
                    utt_id=utt_id,
                    gender=gender,
                    style=style,
                    label=label,
                    text=text,
                    request=request,
                    snr_db=float(rng.uniform(*knobs["snr_db_range"])),
                    noise_seed=int(rng.integers(0, MAX_SEED)),
                    lead_s=float(rng.uniform(*knobs["silence_range_s"])),
                    trail_s=float(rng.uniform(*knobs["silence_range_s"])),
                    gap_s=float(rng.uniform(*knobs["turn_gap_range_s"])),
                    vad=vad,
                    evaluations=_evaluations(rng, label, gender, vad),
                )
            )
        plan.append(utterances)
    return plan
