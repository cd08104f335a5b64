"""The design of the synthetic mini IEMOCAP: what its corpus is made of.

Sentences, labels and their shares, the evaluators' category names, the eSpeak NG
voices of each session, the release's dialog names, and the prosody of speakers and
emotions (:class:`Prosody` baselines, offsets and spreads), all as constants that
:func:`ser_lib.synth.mini_iemocap.make_mini_iemocap` takes as defaults. The random
draws from them are in :mod:`ser_lib.synth.plan`.

Authors
 * ser_lib contributors
"""

from dataclasses import dataclass

SENTENCES = (
    "I left the keys on the kitchen table.",
    "We should talk about this tomorrow.",
    "The train leaves at half past seven.",
    "Did you see the letter from the bank?",
    "She moved to a new apartment last week.",
    "I need to finish this report tonight.",
    "They changed the schedule again.",
    "Can you pass me the blue folder?",
    "My brother is coming over on Sunday.",
    "The meeting was moved to the third floor.",
    "I really thought you would call me.",
    "It is raining outside right now.",
    "We have been waiting for an hour.",
    "Where did you put the old photos?",
    "He said the store closes at nine.",
    "I got the job at the museum.",
    "You never told me about the trip.",
    "The car is parked behind the house.",
    "Let me check my calendar first.",
    "I know exactly what you mean.",
    "That was the last bus of the day.",
    "We are going to the beach next month.",
    "Nobody answered the phone this morning.",
    "I have to go back to the office.",
    "The package arrived this afternoon.",
    "Why are you telling me this now?",
    "She found the ring under the sofa.",
    "I cannot do this any more.",
    "Please sit down for a minute.",
    "The dog ran out of the yard.",
    "Our flight was cancelled last night.",
    "I made dinner for both of us.",
    "You can keep the rest of the money.",
    "He forgot his coat at the restaurant.",
    "We will need a bigger table.",
    "I was not expecting you so early.",
    "The kids are asleep upstairs.",
    "It took me three days to fix it.",
    "Just tell me what happened.",
    "The window in the hallway is open.",
    "I saw your sister at the market.",
    "This is the best news all year.",
    "They are selling the house in June.",
    "I will wait for you outside.",
    "The water is still too cold.",
    "You have to sign these papers.",
    "I lost my wallet on the way home.",
    "We did everything we could.",
)
"""Short English sentences spoken by the synthetic actors."""

KEPT_LABELS = ("neu", "hap", "exc", "ang", "sad")
DROPPED_LABELS = ("fru", "sur", "xxx", "fea", "oth", "dis")

DEFAULT_LABEL_PROBS = {
    "neu": 0.26,
    "hap": 0.10,
    "exc": 0.15,
    "ang": 0.16,
    "sad": 0.18,
    "fru": 0.05,
    "xxx": 0.04,
    "sur": 0.02,
    "fea": 0.015,
    "oth": 0.01,
    "dis": 0.015,
}
"""Label shares of the corpus (kept 85 %, dropped 15 %)."""

CATEGORY_NAMES = {
    "neu": "Neutral",
    "hap": "Happiness",
    "exc": "Excited",
    "ang": "Anger",
    "sad": "Sadness",
    "fru": "Frustration",
    "sur": "Surprise",
    "fea": "Fear",
    "dis": "Disgust",
    "oth": "Other",
}
"""Evaluator category names used in the EmoEvaluation files (``xxx`` = no agreement)."""

DEFAULT_VOICES = (
    ("en-us+f3", "en+m2"),
    ("en+f2", "en-us+m3"),
    ("en-us+f4", "en+m4"),
    ("en+f1", "en-us+m6"),
    ("en-us+f5", "en+m7"),
)
"""(female, male) eSpeak NG voice per session; the number of pairs is the number of sessions."""

IMPRO_DIALOGS = (
    "impro01",
    "impro05a",
    "impro02",
    "impro08b",
    "impro03",
    "impro04",
    "impro05b",
    "impro06",
    "impro07",
    "impro08a",
)
SCRIPT_DIALOGS = (
    "script01_1b",
    "script02_2",
    "script01_3",
    "script03_1",
    "script02_1",
    "script03_2",
    "script01_2",
)


@dataclass(frozen=True)
class Prosody:
    """eSpeak NG prosody values (or offsets, or standard deviations of them).

    Arguments
    ---------
    rate : float
        Words per minute.
    pitch : float
        Base pitch, 0-100 scale.
    pitch_range : float
        Pitch variation, 0-100 scale.
    volume : float
        Amplitude, percent.

    Example
    -------
    >>> Prosody(175, 50, 50, 100).rate
    175
    """

    rate: float
    pitch: float
    pitch_range: float
    volume: float


DEFAULT_BASE_PROSODY = Prosody(rate=170, pitch=50, pitch_range=50, volume=100)
DEFAULT_SPEAKER_SPREAD = Prosody(rate=8, pitch=6, pitch_range=6, volume=8)
DEFAULT_JITTER = Prosody(rate=12, pitch=5, pitch_range=8, volume=12)
DEFAULT_EMOTION_OFFSETS = {
    "neu": Prosody(0, 0, -5, 0),
    "hap": Prosody(15, 12, 20, 15),
    "exc": Prosody(30, 16, 28, 30),
    "ang": Prosody(25, 6, 12, 55),
    "sad": Prosody(-45, -12, -25, -35),
    "fru": Prosody(10, 2, 5, 25),
    "sur": Prosody(10, 20, 35, 20),
    "fea": Prosody(30, 15, -10, -15),
    "dis": Prosody(-20, -6, 5, 5),
    "oth": Prosody(0, 4, 10, 0),
    "xxx": Prosody(5, 3, 5, 5),
}
"""Per-emotion prosody offsets added to the speaker baseline."""

DEFAULT_EMPHASIS_PROBS = {"ang": 0.6, "exc": 0.4, "fru": 0.4, "sur": 0.3, "hap": 0.2}
"""Probability that one word of an utterance gets SSML ``<emphasis>`` (0 if absent)."""

DEFAULT_VAD_MEANS = {
    "neu": (3.0, 2.5, 2.5),
    "hap": (4.0, 3.0, 3.0),
    "exc": (4.0, 3.5, 3.0),
    "ang": (1.5, 4.0, 4.0),
    "sad": (2.0, 2.0, 2.0),
    "fru": (2.0, 3.5, 3.5),
    "sur": (3.5, 3.5, 2.5),
    "fea": (2.0, 3.5, 2.0),
    "dis": (2.0, 3.0, 3.5),
    "oth": (2.5, 3.0, 3.0),
    "xxx": (2.5, 3.0, 3.0),
}
"""Mean (valence, activation, dominance) per label, on IEMOCAP's 1-5 scale."""

EVALUATOR_NOTES = ("", "", "", "", "curious", "annoyed", "tired", "sarcastic")
"""Free-text notes in evaluator lines (mostly empty, as in the release)."""

EVALUATORS = ("E1", "E2", "E3", "E4", "E5", "E6")
"""External evaluators; two of them rate each utterance."""

DISSENT_PROB = 0.5
"""Probability that one of the three categorical ratings disagrees with the label."""

ATTRIBUTE_RATING_SD = 0.7
"""Spread of an evaluator's integer V/A/D ratings around the utterance's values."""

MAX_SEED = 2**31 - 1
"""Exclusive upper bound of the per-utterance eSpeak NG and noise seeds."""
