"""`invoke check` as a test: main stays ruff- and mypy-clean."""

from __future__ import annotations

import subprocess
import sys

from gmf.toolkit.commands import MYPY_PATHS
from tests.helpers import ROOT


def test_ruff_clean():
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_clean():
    out = subprocess.run([sys.executable, "-m", "mypy", *MYPY_PATHS], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
