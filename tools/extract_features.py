#!/usr/bin/env python3
"""Fills a feature cache with a frozen encoder (see ser_lib/features_cli.py).

Example::

    python tools/extract_features.py \\
        --encoder_hparams recipes/IEMOCAP/hparams/encoder/fbank.yaml \\
        --csv results/IEMOCAP/prepared_all/all.csv \\
        --data_root /data/IEMOCAP_full_release --cache_dir results/IEMOCAP/features_fbank
"""

import sys
from pathlib import Path

# Run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ser_lib.features_cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
