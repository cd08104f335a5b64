"""The project's documents stand on their own: nothing points outside the repository."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tracked_documents():
    """Markdown and text documents of the repository (git-tracked, else on disk)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        paths = [ROOT / name for name in listed]
    except (OSError, subprocess.CalledProcessError):
        paths = [p for p in ROOT.rglob("*") if ".venv" not in p.parts]
    return [p for p in paths if p.suffix in (".md", ".txt", ".rst") and p.is_file()]


def test_no_document_points_to_the_shared_folder():
    documents = tracked_documents()
    assert any(p.name == "README.md" for p in documents)
    offenders = [
        str(p.relative_to(ROOT))
        for p in documents
        if "../shared" in p.read_text(encoding="utf-8", errors="replace")
    ]
    assert offenders == []


def test_readme_links_the_design_document():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(docs/DESIGN.md)" in readme
    assert (ROOT / "docs" / "DESIGN.md").is_file()
