"""The repository checkout the toolkit and the dev harness work on: found in this one place.

The toolkit builds images from ``docker/Dockerfile``, mounts the workspace, regenerates the
committed code of ``proto/``, runs ``examples/``; the harness (``bench/``, ``soak/``,
``tests/fuzzing/``) starts servers from the checkout. All of it works only on a checkout,
which is where ``tasks.py`` and these modules come from. An installed copy of ``gmf`` (no
checkout around it) imports fine; using it for toolkit work raises one error naming the fix.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from .errors import ToolkitError

# What a GMF checkout has at its top, beside the gmf/ package this module is in.
MARKERS = ("pyproject.toml", "tasks.py", "docker/Dockerfile")


def candidate() -> Path:
    """The folder above the ``gmf`` package this module was imported from."""
    return Path(__file__).resolve().parents[2]


def is_checkout(path: Path) -> bool:
    return all((path / marker).exists() for marker in MARKERS) and (path / "gmf" / "__init__.py").is_file()


@cache
def root() -> Path:
    """The checkout's top folder; ToolkitError when ``gmf`` was not imported from a checkout."""
    path = candidate()
    if not is_checkout(path):
        raise ToolkitError(
            f"the GMF toolkit works on a checkout of the GMF repository, but gmf was imported from "
            f"{path / 'gmf'}, which has no {', '.join(MARKERS)} beside it (an installed copy): clone the "
            "repository, run `pip install -e '.[toolkit]'` in it and run `invoke` from there"
        )
    return path
