"""Sizes of the benchmark: the models, batches and corpora it measures.

``full`` measures the paper's setting (a HuBERT-large-sized encoder, the 384-wide
WAP-Transformer, K = 1024 local attributes, batches of 96 utterances); ``tiny`` runs
the same code on toy sizes in seconds (for the test suite).

Authors
 * ser_lib contributors
"""

from dataclasses import asdict, dataclass, field

HUBERT_LARGE = dict(
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    intermediate_size=4096,
    feat_extract_norm="layer",
    do_stable_layer_norm=True,
    conv_bias=True,
    # Every layer runs in every step (HuBERT-large fine-tuning configs drop layers
    # at random with p = 0.1, which would make step times vary).
    layerdrop=0.0,
)
"""``transformers.HubertConfig`` settings of HuBERT-large (316 M parameters)."""

TINY_HUBERT = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    # Three small convolutions with a total stride of 320 samples: 50 Hz at 16 kHz.
    conv_dim=(8, 8, 8),
    conv_kernel=(10, 8, 4),
    conv_stride=(5, 8, 8),
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
    feat_extract_norm="layer",
    do_stable_layer_norm=True,
    layerdrop=0.0,
)
"""A toy HuBERT (32-d, layer-norm extractor, pre-LN, 50 Hz) for the ``tiny`` size."""


@dataclass(frozen=True)
class BenchmarkSize:
    """Everything the benchmark measures, for one size.

    Arguments
    ---------
    name : str
        ``tiny`` or ``full``.
    encoder : dict
        ``transformers.HubertConfig`` keyword arguments (random weights).
    adapter : dict
        ``WAPTransformer`` keyword arguments except ``input_dim`` (the encoder's
        ``hidden_size``).
    num_prototypes : int
        K local attributes.
    sap_heads : int
        Heads of statistical attentive pooling.
    num_classes : int
        Emotion classes.
    step_utterances : int
        Utterances in the fixed batch on which the training configurations are
        compared side by side.
    step_seconds : float
        Duration of each of them (no padding).
    warmup_steps : int
        Untimed steps before timing (the first also counts FLOPs).
    encoder_steps : int
        Timed steps of the configurations that run the encoder.
    cached_steps : int
        Timed steps of the configurations on cached features.
    paper_batch : int
        Utterances of mean duration in the stage-1 step whose FLOP/s is compared
        with the matmul peak (96 in the paper).
    efficiency_steps : int
        Timed steps at ``paper_batch``.
    matmul_size : int
        Side of the square matrices of the matmul-peak measurement.
    matmul_repeats : int
        Timed matmuls (the best counts).
    extraction_utterances : int
        Synthetic utterances of the feature-extraction throughput measurement.
    extraction_max_seconds : float
        Their durations (IEMOCAP-like) are clipped to this.
    extraction_batch_seconds : float
        Padded audio per extraction batch (length-sorted batches).
    scaling_utterances : int
        Utterances of the 1x corpus of the scaling measurement.
    scaling_factors : tuple of int
        Corpus sizes measured, in multiples of ``scaling_utterances``.
    scaling_batch : int
        Utterance-equivalents per bucketed batch in the scaling epochs.
    scaling_buckets : int
        Buckets of the scaling epochs (the same for every corpus size).
    corpus_utterances : int
        Utterances of the IEMOCAP-like corpus (5531 in IEMOCAP's 4-class set).
    mean_seconds : float
        Mean duration of the IEMOCAP-like corpus.
    duration_sigma : float
        Log-normal shape of its durations.
    max_seconds : float
        Longest utterance.
    batch_utterances : int
        Batch size of the padding-waste comparison (utterances, or
        utterance-equivalents of mean duration for bucketed batches).
    num_buckets : tuple of int
        Bucket counts compared in the padding-waste table; the first is the
        recommended one.
    frame_rate : float
        Encoder frames per second.
    sample_rate : int
        Audio sample rate.
    max_frames : int
        Longer utterances are randomly cropped to this many frames in training.
    whisper_utterances : int
        EmoDB utterances (evenly spaced) of the Whisper extraction throughput.
    whisper_batch_seconds : float
        Padded audio per Whisper extraction batch.
    protocol_config : str
        Experiment config (relative to the repository) whose size the real-data
        EmoDB protocol's epochs are timed at.
    protocol_results : str
        Results file (relative to the repository) holding the as-run wall time.
    protocol_row : str
        Its row of that protocol.
    protocol_epoch_steps : int
        Timed steps of each stage's epoch (0: every step of the epoch).
    folds : int
        Folds of the paper protocol (for the wall-time extrapolation).
    epochs_per_stage : int
        Epochs of each stage in the paper protocol.
    seed : int
        Seed of every random draw.
    """

    name: str
    encoder: dict = field(default_factory=lambda: dict(HUBERT_LARGE))
    adapter: dict = field(
        default_factory=lambda: dict(d_model=384, num_layers=3, nhead=6)
    )
    num_prototypes: int = 1024
    sap_heads: int = 4
    num_classes: int = 4
    step_utterances: int = 2
    step_seconds: float = 4.5
    warmup_steps: int = 1
    encoder_steps: int = 2
    cached_steps: int = 10
    paper_batch: int = 96
    efficiency_steps: int = 2
    matmul_size: int = 2048
    matmul_repeats: int = 5
    extraction_utterances: int = 6
    extraction_max_seconds: float = 6.0
    extraction_batch_seconds: float = 12.0
    scaling_utterances: int = 32
    scaling_factors: tuple = (1, 2, 4)
    scaling_batch: int = 16
    scaling_buckets: int = 3
    corpus_utterances: int = 5531
    mean_seconds: float = 4.5
    duration_sigma: float = 0.6
    max_seconds: float = 35.0
    batch_utterances: int = 96
    num_buckets: tuple = (40, 10, 20, 60)
    frame_rate: float = 50.0
    sample_rate: int = 16000
    max_frames: int = 1500
    whisper_utterances: int = 40
    whisper_batch_seconds: float = 60.0
    protocol_config: str = "recipes/EmoDB/hparams/whisper_base_cpu.yaml"
    protocol_results: str = "docs/results/emodb.json"
    protocol_row: str = "wap_la_teacher"
    protocol_epoch_steps: int = 0
    folds: int = 5
    epochs_per_stage: int = 100
    seed: int = 0

    def as_dict(self):
        """The settings as a JSON-serialisable dict.

        Example
        -------
        >>> SIZES["tiny"].as_dict()["name"]
        'tiny'
        """
        return asdict(self)


SIZES = {
    "full": BenchmarkSize(name="full"),
    "tiny": BenchmarkSize(
        name="tiny",
        encoder=dict(TINY_HUBERT),
        adapter=dict(d_model=32, num_layers=2, nhead=2),
        num_prototypes=16,
        step_utterances=2,
        step_seconds=1.0,
        encoder_steps=1,
        cached_steps=1,
        paper_batch=4,
        efficiency_steps=1,
        matmul_size=128,
        matmul_repeats=2,
        extraction_utterances=3,
        extraction_max_seconds=2.0,
        extraction_batch_seconds=3.0,
        scaling_utterances=6,
        scaling_factors=(1, 2),
        scaling_batch=4,
        scaling_buckets=2,
        max_frames=150,
        whisper_utterances=2,
        whisper_batch_seconds=10.0,
        protocol_epoch_steps=1,
    ),
}
"""The benchmark sizes by name."""
