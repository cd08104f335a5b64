#!/usr/bin/env python3
"""Exports a trained fold into a self-contained model folder for inference.

::

    python tools/export_model.py results/demo/fbank_raw_all/fold1/finetune models/demo_fold1
    ser-predict models/demo_fold1 some.wav

The folder holds the inference hyperparams.yaml, the weights of the checkpoint the
evaluation used, label_encoder.txt, the encoder hparams file of training and the
fingerprint of its encoder (see ser_lib.inference). A Hugging Face encoder's weights are
not copied: its ``encoder_source`` must be reachable where the model is used
(``ser-predict --encoder_overrides "{encoder_source: /local/copy}"``).
"""

import argparse
import sys
from pathlib import Path

# Run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ser_lib.inference import ModelFolderError, export_model  # noqa: E402


def main(argv=None):
    """Exports the model; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="trained stage-2 folder (.../fold<k>/finetune)")
    parser.add_argument("target", help="the new model folder (must not exist)")
    parser.add_argument(
        "--encoder_hparams", help="the encoder hparams file, if not found"
    )
    parser.add_argument(
        "--recipe_dir", help="the recipe folder of training, if not found"
    )
    args = parser.parse_args(argv)
    try:
        target = export_model(
            args.source, args.target, args.encoder_hparams, args.recipe_dir
        )
    except ModelFolderError as err:
        print(f"export_model: error: {err}", file=sys.stderr)
        return 2
    print(f"Exported {args.source} to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
