"""Build of the gmf package: the pure-Python modules, plus the hot path compiled with mypyc.

Everything else is in pyproject.toml. The modules listed in gmf/_native.py (SOURCES) are
compiled by mypyc (mypy is a build dependency, from PyPI) into C extensions installed beside
their .py files; gmf/_compiled.py records the hash of each source compiled, so a changed
source falls back to the pure modules at run time instead of running stale code. Without a C
compiler (or with GMF_PURE_PYTHON=1 at install time) the build says why in one line and
installs the pure-Python package, which is the reference and works the same, slower.
"""

from __future__ import annotations

import hashlib
import os
import re
import runpy
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
NATIVE = runpy.run_path(str(ROOT / "gmf" / "_native.py"))
SOURCES: tuple[str, ...] = NATIVE["SOURCES"]
MANIFEST = "gmf/_compiled.py"
# The io_uring binding: plain C on the kernel's ABI, built whichever build of the hot path is
# installed (GMF_PURE_PYTHON=1 only concerns the mypyc modules). Without a compiler it is
# skipped, and gmf/runtime/uring_binding.py says why the uring runtime is unavailable.
URING = Extension("gmf.runtime._uring", ["gmf/runtime/_uring.c"], extra_compile_args=["-O2"])


def say(message: str) -> None:
    print(f"gmf: {message}", file=sys.stderr, flush=True)


def manifest_text(failed: str | None = None) -> str:
    """gmf/_compiled.py: the hash of every source compiled, or (FAILED) why nothing was."""
    lines = ['"""Written by setup.py: the sources the mypyc build compiled and their hashes, or why it failed."""',
             "", f"FAILED: str | None = {failed!r}", "SOURCE_HASHES: dict[str, str] = {"]
    if failed is None:
        for path in SOURCES:
            lines.append(f"    {path!r}: {hashlib.sha256((ROOT / path).read_bytes()).hexdigest()!r},")
    return "\n".join([*lines, "}", ""])


def short(exc: BaseException) -> str:
    """The reason in one short line: a failed compiler command is named by its program."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = re.sub(r"Command '\['([^']*)'.*?\]' returned non-zero exit status (\d+)\.?", r"\1 exited with status \2", text)
    return text if len(text) <= 200 else f"{text[:120]} ... {text[-70:]}"


class BuildExt(build_ext):
    """Builds the mypyc extensions; if that fails, the package is still pure Python."""

    def run(self) -> None:
        mypyc = [ext for ext in self.extensions if ext is not URING]
        compiler = self.compiler  # a name or None: each run() below makes its compiler from it
        self.extensions = [URING]
        try:
            super().run()
        except Exception as exc:  # no compiler or headers: the uring runtime says why at run time
            say(f"the io_uring binding was not built ({short(exc)}); the uring runtime needs a C compiler"
                " and Python's headers (Debian: apt-get install gcc python3-dev)")
            self.extensions = []
        built = self.extensions
        if not mypyc:
            return
        self.extensions = mypyc
        self.compiler = compiler
        try:
            super().run()
        except Exception as exc:  # no compiler, no headers, a compile error: fall back
            self._fallback(exc)
        else:
            self._write_manifest(manifest_text())
            say(f"compiled the hot path with mypyc ({len(SOURCES)} modules)")
        self.extensions = built + self.extensions

    def _fallback(self, exc: BaseException) -> None:
        reason = f"compiling with mypyc failed ({short(exc)}); it needs a C compiler and Python's headers"
        say(f"installing the pure-Python build: {reason} (Debian: apt-get install gcc python3-dev)")
        self.extensions = []
        self._write_manifest(manifest_text(failed=reason), keep_built=True)

    def _write_manifest(self, text: str, keep_built: bool = False) -> None:
        """Into the build, and into the checkout for an in-place (editable) build. A failed build
        leaves a checkout's record of an earlier successful one alone: a checkout shared with
        another interpreter (the dev container mounts it) keeps the modules built for that one,
        and gmf/_native.py still finds whether they suit the interpreter importing them."""
        inplace = self.inplace or getattr(self, "editable_mode", False)
        for target in {Path(self.build_lib), *([ROOT] if inplace else [])}:
            out = target / MANIFEST
            if keep_built and target == ROOT and out.exists() and "FAILED: str | None = None" in out.read_text():
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            partial = out.with_name(f".{out.name}.{os.getpid()}")
            partial.write_text(text)
            os.replace(partial, out)  # a process starting meanwhile reads the old record or the new one

    def get_outputs(self) -> list[str]:
        return super().get_outputs() if self.extensions else []


def ext_modules() -> list:
    return [URING, *mypyc_modules()]


def mypyc_modules() -> list:
    if os.environ.get(NATIVE["PURE_ENV"]) == "1":
        say(f"installing the pure-Python build ({NATIVE['PURE_ENV']}=1)")
        return []
    try:
        from mypyc.build import mypycify
    except ImportError as exc:
        say(f"installing the pure-Python build: mypyc is not available ({exc})")
        return []
    try:
        return mypycify(list(SOURCES), opt_level="3", group_name=NATIVE["GROUP"])
    except (Exception, SystemExit) as exc:  # mypy found an error (mypycify exits): the pure build still works
        say(f"installing the pure-Python build: mypyc could not compile ({short(exc)})")
        return []


setup(ext_modules=ext_modules(), cmdclass={"build_ext": BuildExt})
