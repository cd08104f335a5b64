#!/usr/bin/env python3
"""Generates the synthetic mini-IEMOCAP corpus (see ser_lib/synth/cli.py).

Example::

    python tools/make_mini_iemocap.py --out_dir data/mini_iemocap
"""

import sys
from pathlib import Path

# Run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ser_lib.synth.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
