"""Where the tests find the real material (EmoDB, whisper-base, EmoBox folds).

The project's CI has it in ``../shared`` next to the project root; a fresh clone
does not, and the tests that need it are skipped with the reason below.
"""

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared"
EMODB_DIR = SHARED / "data" / "emodb"
WHISPER_BASE_DIR = SHARED / "models" / "whisper-base"
EMOBOX_DIR = SHARED / "emobox"


def require(*paths):
    """Skips the calling test unless every path exists, naming the missing ones."""
    missing = [str(path) for path in paths if not Path(path).exists()]
    if missing:
        pytest.skip(
            "real material not found (expected next to the project root, in "
            f"../shared): {', '.join(missing)}"
        )
