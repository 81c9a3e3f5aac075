"""Which build of the hot path runs: the mypyc-compiled modules, or the pure-Python ones.

``pip install`` compiles the modules in :data:`MODULES` with mypyc when it can (setup.py; a C
compiler and Python's headers are all it needs, mypy comes from PyPI as a build dependency)
and records a hash of each source it compiled in ``gmf/_compiled.py``. The pure-Python
modules are the reference and the fallback, and always installed beside the compiled ones.

At import (``gmf/__init__.py`` calls :func:`select` before anything else) the compiled build
is used only when it was built and every source still has the hash it was compiled from; it
is bypassed with ``GMF_PURE_PYTHON=1`` (how CI runs the protocol suite and the fuzzer against
both builds), and when a source changed since the build (an editable checkout someone edits:
warned once, rebuild with ``pip install -e .``). Bypassing means a finder in front of the
import system loads these modules from their ``.py`` files. :func:`build` says which is in
use and why.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what mypyc reads when it compiles; at run time the decorator does nothing
    from mypy_extensions import mypyc_attr as mypyc_attr
else:
    def mypyc_attr(*args: Any, **kwargs: Any) -> Any:
        """``@mypyc_attr(allow_interpreted_subclasses=True)`` on a compiled class that pure
        modules subclass (``Call``: gmf/rpc/web.py; ``MethodCache``: gmf/rpc/interceptors.py)."""
        return lambda cls: cls

# The compiled set (paths relative to the checkout, as setup.py hands them to mypyc): the
# HTTP/2 core and gRPC framing, the connection (and its base, shared with the pure HTTP/1.1
# connection) and the call, and what they call per request (the handler's context, the
# method cache, the counters), and per streamed message (the request-stream driver, the
# streaming loops), and the HPACK decoder (hpack_codec: a cached block is one native call and
# one dict lookup): compiled modules call each other as C. The io_uring transport too (per
# read: its completion handler, the connection's write and the flush; measured 3,300 fewer
# instructions per read of a bidi echo worker). Not compiled: the ring (uring_ring: its
# ``_wait`` frame is how profiles tell the loop's idle time), the selector (once per loop
# iteration), hpack_blocks (the decoded block subclasses list, the table hpack's HeaderTable;
# the misses run in the hpack package either way), the runner (the watchdog names the running RPC from its Python
# frames: its ``run`` stays Python, the per-message loops it calls are compiled in
# gmf/rpc/streaming.py), eager (measured: compiled, it costs more instructions per request,
# as the task calls into it through Python's protocol either way).
SOURCES = (
    "gmf/protocol/frames.py",
    "gmf/protocol/grpc.py",
    "gmf/protocol/h2events.py",
    "gmf/protocol/h2stream.py",
    "gmf/protocol/h2limits.py",
    "gmf/protocol/hpack_codec.py",
    "gmf/protocol/h2conn.py",
    "gmf/rpc/base.py",
    "gmf/rpc/call.py",
    "gmf/rpc/connection.py",
    "gmf/rpc/context.py",
    "gmf/rpc/registry.py",
    "gmf/rpc/driver.py",
    "gmf/rpc/streaming.py",
    "gmf/metrics.py",
    "gmf/runtime/uring_transport.py",
)
MODULES = tuple(path[: -len(".py")].replace("/", ".") for path in SOURCES)
# mypyc's shared library of the group, a top-level module (gmf_native__mypyc.*.so beside the
# gmf/ folder: mypyc derives each module's __file__ from where it is); each module's own .so
# in gmf/ is a shim that imports it.
GROUP = "gmf_native"
PURE_ENV = "GMF_PURE_PYTHON"

_ROOT = Path(__file__).resolve().parent.parent
_state: dict[str, Any] = {"compiled": False, "reason": "not selected yet"}


def source_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Loads the modules of :data:`MODULES` from their ``.py`` files (the pure build)."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        if fullname not in MODULES:
            return None
        source = _ROOT / (fullname.replace(".", "/") + ".py")
        loader = importlib.machinery.SourceFileLoader(fullname, str(source))
        return importlib.util.spec_from_file_location(fullname, source, loader=loader)


def _compiled_hashes() -> tuple[dict[str, str] | None, str]:
    """The hashes recorded by the build (None when nothing was compiled), and why not."""
    try:
        from . import _compiled  # type: ignore[attr-defined]  # written by setup.py
    except ImportError:
        return None, "pure Python (not compiled at install time)"
    failed = getattr(_compiled, "FAILED", None)
    if failed:
        return None, f"pure Python: {failed}"
    hashes: dict[str, str] = getattr(_compiled, "SOURCE_HASHES", {})
    if not hashes or not all(_extension_exists(name) for name in MODULES) or not _group_importable():
        return None, "pure Python (the compiled modules are missing)"
    return hashes, ""


def _extension_exists(module: str) -> bool:
    base = _ROOT / module.replace(".", "/")
    return any(base.with_name(base.name + suffix).exists() for suffix in importlib.machinery.EXTENSION_SUFFIXES)


def _group_importable() -> bool:
    try:
        return importlib.util.find_spec(f"{GROUP}__mypyc") is not None
    except (ImportError, ValueError):
        return False


def select() -> None:
    """Decide the build before any module of :data:`MODULES` is imported (idempotent)."""
    if _state["reason"] != "not selected yet":
        return
    if any(name in sys.modules for name in MODULES):  # imported before gmf (unusual): as it is
        module = sys.modules[MODULES[0]] if MODULES[0] in sys.modules else None
        _state.update(compiled=bool(module and not str(getattr(module, "__file__", "")).endswith(".py")),
                      reason="imported before gmf/__init__")
        return
    hashes, why = _compiled_hashes()
    if hashes is None:  # the finder still goes in: a stray .so must not shadow a .py
        _state.update(compiled=False, reason=why)
    elif os.environ.get(PURE_ENV) == "1":
        _state.update(compiled=False, reason=f"pure Python ({PURE_ENV}=1)")
    else:
        stale = [path for path in SOURCES if hashes.get(path) != source_hash(_ROOT / path)]
        if not stale:
            _state.update(compiled=True, reason="compiled with mypyc")
            return
        _state.update(compiled=False, reason=f"pure Python: changed since compiled: {', '.join(stale)}")
        warnings.warn(
            f"gmf: {', '.join(stale)} changed since the mypyc build: using the pure-Python modules "
            "(rebuild with `pip install -e .` to run compiled)", RuntimeWarning, stacklevel=3,
        )
    sys.meta_path.insert(0, _SourceFirst())


def build() -> dict[str, Any]:
    """``{"compiled": bool, "reason": str}``: which build of the hot path this process runs."""
    return dict(_state)
