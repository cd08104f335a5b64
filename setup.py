"""Installs ser_lib, the library behind the SER recipes."""

from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
requirements = [
    line.strip()
    for line in (here / "requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]

setup(
    name="ser_lib",
    version="0.1.0",
    description=(
        "Speech emotion recognition with a WAP-Transformer adapter and local "
        "attributes on frozen speech encoders (SpeechBrain recipes)."
    ),
    long_description=(here / "README.md").read_text() if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["ser_lib", "ser_lib.*"]),
    install_requires=requirements,
    entry_points={
        "console_scripts": [
            "ser-make-mini-iemocap=ser_lib.synth.cli:main",
            "ser-extract-features=ser_lib.features_cli:main",
            "ser-predict=ser_lib.predict_cli:main",
        ]
    },
)
