"""The errors GMF raises to its user (``gmf.StartupError``), in one place every layer can
import without importing the layers above it."""

from __future__ import annotations


class StartupError(RuntimeError):
    """The server could not start (address in use, bad address, worker failed to start)."""
