"""The io_uring binding (``gmf/runtime/_uring.c``): the installed build, or one built on first use.

``pip install`` compiles ``_uring.c`` beside this file (setup.py). A checkout used without
installing it for the running Python (the dev container and ``invoke test --python 3.13``
import gmf from the bind-mounted checkout through PYTHONPATH) has no build for that
interpreter: then the C file is compiled once with the interpreter's own compiler settings
into ``$XDG_CACHE_HOME/gmf`` (default ``~/.cache/gmf``), keyed by the source's hash and the
interpreter's ABI, and loaded from there. :func:`load` returns the module, or ``None`` and
the reason, which names what to install.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

MODULE = "gmf.runtime._uring"
SOURCE = Path(__file__).with_name("_uring.c")
HINT = ("it needs a C compiler and Python's headers (Debian/Ubuntu: apt-get install gcc python3-dev;"
        " then pip install -e . again)")

_loaded: tuple[ModuleType | None, str | None] | None = None


def load() -> tuple[ModuleType | None, str | None]:
    """(the binding, None), or (None, why it is unavailable); the answer is kept."""
    global _loaded
    if _loaded is None:
        _loaded = _load()
    return _loaded


def _load() -> tuple[ModuleType | None, str | None]:
    if not sys.platform.startswith("linux"):
        return None, "io_uring is Linux-only"
    try:
        from gmf.runtime import _uring  # type: ignore[attr-defined]
    except ImportError:
        pass
    else:
        return _uring, None
    if not SOURCE.exists():
        return None, f"the io_uring binding was not built and its source {SOURCE} is missing; reinstall gmf"
    try:
        return _import(_build_cached()), None
    except (OSError, subprocess.SubprocessError, ImportError) as exc:
        detail = " ".join(str(exc).split())[:300]
        return None, f"the io_uring binding (gmf/runtime/_uring.c) could not be built ({detail}); {HINT}"


def cache_path() -> Path:
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gmf"
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    return base / f"_uring-{digest}{suffix}"


def _build_cached() -> Path:
    target = cache_path()
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    cc = shlex.split(sysconfig.get_config_var("CC") or "cc")
    include = sysconfig.get_paths()["include"]
    if not Path(include, "Python.h").exists():
        raise OSError(f"Python.h is not in {include}")
    cmd = [*cc, "-O2", "-shared", "-fPIC", f"-I{include}", str(SOURCE), "-o", str(partial)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        raise OSError(f"{cc[0]} exited with status {proc.returncode}: {proc.stderr.strip()[-200:]}")
    os.replace(partial, target)  # concurrent first uses (one per worker) each build, one wins
    return target


def _import(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(MODULE, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[MODULE] = module
    return module
