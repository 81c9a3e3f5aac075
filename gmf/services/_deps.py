"""A clear error when a package a standard service is built on is missing."""

from __future__ import annotations

import importlib.util


def require(module: str, package: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ImportError(f"gmf.services needs the {package} package: pip install {package}")
