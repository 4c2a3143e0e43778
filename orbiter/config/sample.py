"""The commented sample ``orbiter.toml`` that ships in the package, and its writer.

``orbiter config init [PATH]`` writes it; ``docs/orbiter.toml`` is a link to the
same file, so the sample a reader finds in the repository is the one installed.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: The sample's file name inside this package (package data, see pyproject.toml).
SAMPLE_NAME = "sample.toml"


def sample_text() -> str:
    """The sample config's text, as installed with orbiter."""
    return (
        resources.files(__package__ or "orbiter.config")
        .joinpath(SAMPLE_NAME)
        .read_text(encoding="utf-8")
    )


def write_sample(path: str | Path, *, force: bool = False) -> Path:
    """Write the sample config to ``path`` and return it.

    :class:`FileExistsError` if ``path`` exists and ``force`` is false (nothing
    is written then); :class:`OSError` if it cannot be written.
    """
    target = Path(path)
    mode = "w" if force else "x"
    with target.open(mode, encoding="utf-8") as fh:
        fh.write(sample_text())
    return target
