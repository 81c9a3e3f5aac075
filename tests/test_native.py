"""The two builds of the hot path (gmf/_native.py): the mypyc-compiled one runs when it was
built and its sources are unchanged, ``GMF_PURE_PYTHON=1`` selects the pure one, a changed or
incomplete build falls back to pure, and both write the same bytes for the same input.

Tests that need a compiled build skip without one (no C compiler at install time), unless
``GMF_REQUIRE_COMPILED=1`` (CI, which installs gcc and Python's headers), where that fails.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gmf import _native
from tests.helpers import ROOT

PROBE = (
    "import json, sys, warnings\n"
    # An editable install (pip install -e, as CI has) maps gmf's modules to its checkout by
    # name, past PYTHONPATH: the probes of a copy must see only the copy.
    "sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, '__module__', '').startswith('__editable__')]\n"
    "sys.path_hooks[:] = [h for h in sys.path_hooks if not getattr(h, '__module__', '').startswith('__editable__')]\n"
    "sys.path_importer_cache.clear()\n"
    "warnings.simplefilter('always')\n"
    "import gmf\n"
    "from gmf import _native\n"
    "import gmf.protocol.h2conn, gmf.rpc.connection, gmf.runtime.uring_transport\n"
    "print(json.dumps({'build': _native.build(), 'files': {m: sys.modules[m].__file__ for m in _native.MODULES}}))\n"
)


def _env(pure: bool, pythonpath: Path = ROOT) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != _native.PURE_ENV}
    if pure:
        env[_native.PURE_ENV] = "1"
    env["PYTHONPATH"] = str(pythonpath)
    return env


def _probe(pure: bool, pythonpath: Path = ROOT) -> tuple[dict[str, Any], str]:
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60,
                          env=_env(pure, pythonpath), cwd=pythonpath)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


def _compiled(files: dict[str, str]) -> bool:
    """Every module of the set was loaded from an extension (True), or every one from its .py (False)."""
    kinds = {any(f.endswith(s) for s in importlib.machinery.EXTENSION_SUFFIXES) for f in files.values()}
    assert len(kinds) == 1, f"a mix of compiled and pure modules: {files}"
    assert kinds == {True} or all(f.endswith(".py") for f in files.values()), files
    return kinds == {True}


@pytest.fixture(scope="module")
def built() -> None:
    """Skips (fails with GMF_REQUIRE_COMPILED=1) unless this checkout has a current mypyc build."""
    hashes, why = _native._compiled_hashes()
    if hashes is None:
        reason = f"no mypyc build here ({why}): `pip install -e .` or `python setup.py build_ext --inplace`"
    else:
        stale = [p for p in _native.SOURCES if hashes.get(p) != _native.source_hash(ROOT / p)]
        reason = f"the mypyc build is older than {', '.join(stale)}: rebuild" if stale else ""
    if reason:
        if os.environ.get("GMF_REQUIRE_COMPILED") == "1":
            pytest.fail(f"compiled build required (GMF_REQUIRE_COMPILED=1): {reason}")
        pytest.skip(reason)


def test_the_compiled_build_runs_when_built_and_pure_python_when_asked(built):
    out, _ = _probe(pure=False)
    assert out["build"] == {"compiled": True, "reason": "compiled with mypyc"}
    assert _compiled(out["files"])
    out, _ = _probe(pure=True)
    assert out["build"] == {"compiled": False, "reason": f"pure Python ({_native.PURE_ENV}=1)"}
    assert not _compiled(out["files"])


def _copy(tmp_path: Path, *, group_lib: bool, shims: bool) -> Path:
    """gmf/ as pip installs it (optionally without mypyc's group library or the shims)."""
    ignore = ["__pycache__"] if shims else ["__pycache__", "*.so", "_compiled.py"]
    shutil.copytree(ROOT / "gmf", tmp_path / "gmf", ignore=shutil.ignore_patterns(*ignore))
    if group_lib:
        for lib in ROOT.glob(f"{_native.GROUP}__mypyc*"):
            shutil.copy(lib, tmp_path / lib.name)
    return tmp_path


def test_a_copy_runs_compiled_until_a_source_changes(built, tmp_path):
    """An editable checkout someone edits: the edited module and the rest of the set run from
    their .py files (never a mix, never stale code), with one warning naming the file."""
    site = _copy(tmp_path, group_lib=True, shims=True)
    out, _ = _probe(pure=False, pythonpath=site)
    assert out["build"]["compiled"] and _compiled(out["files"])
    with open(site / "gmf/protocol/h2conn.py", "a") as edited:
        edited.write("\n# edited after the build\n")
    out, stderr = _probe(pure=False, pythonpath=site)
    assert out["build"] == {"compiled": False,
                            "reason": "pure Python: changed since compiled: gmf/protocol/h2conn.py"}
    assert not _compiled(out["files"])
    assert stderr.count("RuntimeWarning") == 1 and "pip install -e ." in stderr, stderr


def test_without_the_group_library_the_pure_modules_run(built, tmp_path):
    """The shims without mypyc's shared library (a copy of gmf/ alone) would not import:
    the pure modules run, and build() says why."""
    out, _ = _probe(pure=False, pythonpath=_copy(tmp_path, group_lib=False, shims=True))
    assert out["build"] == {"compiled": False, "reason": "pure Python (the compiled modules are missing)"}
    assert not _compiled(out["files"])


def test_never_compiled_is_pure_and_says_so(tmp_path):
    out, _ = _probe(pure=False, pythonpath=_copy(tmp_path, group_lib=False, shims=False))
    assert out["build"] == {"compiled": False, "reason": "pure Python (not compiled at install time)"}
    assert not _compiled(out["files"])


def _transcript(pure: bool, scenarios: Path) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "tests.helpers.transcript", "--scenarios", str(scenarios)],
                          capture_output=True, text=True, timeout=600, env=_env(pure), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: dict[str, Any] = json.loads(proc.stdout)
    assert out["build"]["compiled"] is not pure and _compiled(out["files"]) is not pure, out["build"]
    return out


def test_both_builds_write_the_same_bytes(built, tmp_path):
    """The differential check: 200 fuzz scenarios into the HTTP/2 core, and unary, plain-def,
    server-streaming and bidi calls through a real GrpcConnection; the digests of what the
    server wrote must be equal, scenario by scenario."""
    from tests.helpers.transcript import draw_scenarios

    scenarios = tmp_path / "scenarios.pickle"
    scenarios.write_bytes(pickle.dumps(draw_scenarios(200)))
    compiled, pure = _transcript(False, scenarios), _transcript(True, scenarios)
    assert compiled["rpc"] == pure["rpc"]
    assert len(compiled["fuzz"]) == len(pure["fuzz"]) == 201 and compiled["fuzz"][0] == pure["fuzz"][0]
    differ = [i for i, (a, b) in enumerate(zip(compiled["fuzz"][1:], pure["fuzz"][1:], strict=True)) if a != b]
    assert not differ, f"scenarios {differ[:10]} wrote different bytes (replay: python -m tests.helpers.transcript)"
