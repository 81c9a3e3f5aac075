"""Build the Go peers (bench/peers/go: benchmark servers, load client, interop client) offline with Debian's Go toolchain.

    python3 bench/peers/go_build.py [--force] [--cache DIR]

prints the binaries as one JSON line (``greeter``, ``streambench``, ``streamload``, ``interop``,
``built``, ``seconds``), or ``skipped: <reason>, install <packages>`` with exit status 3 when a tool or
Go package is missing. From Python: ``build()`` returns ``GoPeers`` or raises ``GoUnavailable``
(``str(exc)`` is that same line) or ``GoBuildError``.

How: GOPATH mode (``GO111MODULE=off``) with the sources of Debian's Go packages in
/usr/share/gocode (golang-google-grpc-dev is grpc-go 1.33; it runs on the protobuf APIv2
runtime of golang-google-protobuf-dev, through golang-github-golang-protobuf-1-5-dev). The
``.pb.go`` files come from ``protoc`` (protobuf-compiler) with ``protoc-gen-go`` (APIv2) and
``protoc-gen-go-grpc`` (built from grpc-go 1.33's own tree, so its output matches the
library). Everything is written in a cache directory outside the repository
(``$GMF_GO_CACHE``, else ``$XDG_CACHE_HOME/gmf/go``, else ``~/.cache/gmf/go``) and rebuilt
only when an input changes: the Go sources, the .proto files, or the toolchain.

Standalone on purpose (only the standard library): the benchmark harness imports it.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "bench" / "peers" / "go"
GOCODE = Path("/usr/share/gocode")
IMPORT_ROOT = "gmfpeers"  # the Go import path of bench/peers/go in the build's GOPATH
_INTEROP = ROOT / "proto" / "grpc" / "testing"
PROTOS: dict[str, tuple[Path, ...]] = {  # Go package gmfpeers/pb/<name> <- its .proto files (one folder)
    "helloworld": (ROOT / "proto" / "helloworld" / "helloworld.proto",),
    "streambench": (ROOT / "proto" / "streambench" / "streambench.proto",),
    "interop": tuple(_INTEROP / f"{name}.proto" for name in ("empty", "messages", "test")),
}
COMMANDS = ("greeter", "streambench", "streamload", "interop")
SKIPPED_EXIT = 3


@dataclass(frozen=True)
class Requirement:
    what: str
    package: str  # the Debian package that provides it
    path: Path | None = None  # a file the package installs; None: ``what`` is a command on PATH

    def present(self) -> bool:
        return self.path.exists() if self.path is not None else shutil.which(self.what) is not None


REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement("go", "golang-go"),
    Requirement("protoc", "protobuf-compiler"),
    Requirement("protoc-gen-go", "protoc-gen-go"),
    Requirement("protoc-gen-go-grpc", "protoc-gen-go-grpc"),
    Requirement("grpc-go", "golang-google-grpc-dev", GOCODE / "src/google.golang.org/grpc/server.go"),
    Requirement(
        "google.golang.org/protobuf", "golang-google-protobuf-dev", GOCODE / "src/google.golang.org/protobuf/proto"
    ),
    Requirement(  # grpc-go imports github.com/golang/protobuf; 1.5 is the one that wraps APIv2
        "github.com/golang/protobuf 1.5",
        "golang-github-golang-protobuf-1-5-dev",
        GOCODE / "src/github.com/golang/protobuf/proto/registry.go",
    ),
)
PACKAGES = " ".join(r.package for r in REQUIREMENTS)


class GoUnavailable(RuntimeError):
    """A tool or Go package the build needs is missing; ``str()`` is the skip line."""


class GoBuildError(RuntimeError):
    """protoc or go failed; the message has the command and its output."""


@dataclass(frozen=True)
class GoPeers:
    greeter: Path  # helloworld.Greeter server
    streambench: Path  # streambench.StreamBench server
    streamload: Path  # the load client
    interop: Path  # gRPC's interop test cases on grpc-go's client (tests/peers/test_interop_go.py)
    built: bool  # False: the cache was already up to date
    seconds: float  # time this call took

    def binaries(self) -> dict[str, Path]:
        return {name: getattr(self, name) for name in COMMANDS}


def cache_dir() -> Path:
    if os.environ.get("GMF_GO_CACHE"):
        return Path(os.environ["GMF_GO_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gmf" / "go"


def check() -> None:
    """Raise GoUnavailable naming what is missing and the packages to install."""
    absent = [r for r in REQUIREMENTS if not r.present()]
    if absent:
        reason = ", ".join(f"{r.what} not found" for r in absent)
        raise GoUnavailable(f"skipped: {reason}, install {' '.join(r.package for r in absent)} "
                            f"(all of them: apt-get install -y {PACKAGES})")


def go_env(cache: Path) -> dict[str, str]:
    """The environment of every go command: offline GOPATH mode, nothing written outside ``cache``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GO")}
    env.update(
        GO111MODULE="off",
        GOPATH=f"{cache / 'gopath'}{os.pathsep}{GOCODE}",
        GOCACHE=str(cache / "gocache"),
        CGO_ENABLED="0",  # static binaries, no C compiler needed
    )
    return env


def _go_sources() -> Iterator[Path]:
    return (p for p in sorted(SOURCES.rglob("*.go")) if p.is_file())


def _tool_identity(command: str) -> str:
    path = shutil.which(command)
    if path is None:
        return f"{command}: none"
    stat = Path(path).resolve().stat()
    return f"{command}: {path} {stat.st_size} {stat.st_mtime_ns}"


def fingerprint() -> str:
    """A hash of every input: Go sources, .proto files, go/protoc/plugins, grpc-go's version."""
    digest = hashlib.sha256()
    for path in _go_sources():
        digest.update(str(path.relative_to(SOURCES)).encode() + b"\0" + path.read_bytes() + b"\0")
    for name, protos in PROTOS.items():
        for proto in protos:
            digest.update(name.encode() + b"\0" + proto.read_bytes() + b"\0")
    for command in ("go", "protoc", "protoc-gen-go", "protoc-gen-go-grpc"):
        digest.update(_tool_identity(command).encode() + b"\0")
    for library in ("google.golang.org/grpc/version.go", "google.golang.org/protobuf/internal/version/version.go"):
        file = GOCODE / "src" / library
        digest.update(file.read_bytes() if file.exists() else b"none")
    digest.update(Path(__file__).read_bytes())  # how we build is an input too
    return digest.hexdigest()


def _run(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise GoBuildError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result.stdout


@contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """One build at a time per cache (parallel test runs, a bench beside a test)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _stage(src: Path, env: dict[str, str]) -> None:
    """Fill GOPATH/src/gmfpeers: the Go sources, and pb/<name> generated from each .proto."""
    if src.exists():
        shutil.rmtree(src)
    for path in _go_sources():
        target = src / path.relative_to(SOURCES)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    for name, protos in PROTOS.items():
        out = src / "pb" / name
        out.mkdir(parents=True)
        # the .proto files carry no go_package: each of them maps to this package
        mappings = [f"M{proto.name}={IMPORT_ROOT}/pb/{name}" for proto in protos]
        _run(
            [
                "protoc", f"-I{protos[0].parent}",
                f"--go_out={out}", "--go_opt=paths=source_relative", *(f"--go_opt={m}" for m in mappings),
                f"--go-grpc_out={out}", "--go-grpc_opt=paths=source_relative", *(f"--go-grpc_opt={m}" for m in mappings),
                *(str(proto) for proto in protos),
            ],
            env,
        )


def build(cache: Path | None = None, force: bool = False, log: Callable[[str], None] | None = None) -> GoPeers:
    """Build the binaries into ``cache``/bin unless they are current; see the module doc."""
    check()
    started = time.monotonic()
    cache = cache or cache_dir()
    bin_dir = cache / "bin"
    peers = {name: bin_dir / name for name in COMMANDS}
    stamp = cache / "fingerprint"
    env = go_env(cache)
    with _locked(cache):
        wanted = fingerprint()
        current = stamp.exists() and stamp.read_text() == wanted and all(p.exists() for p in peers.values())
        if not current or force:
            if log:
                log(f"building the Go peers in {cache}")
            stamp.unlink(missing_ok=True)
            _stage(cache / "gopath" / "src" / IMPORT_ROOT, env)
            bin_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cache) as out:
                _run(["go", "build", "-o", out, *(f"{IMPORT_ROOT}/{name}" for name in COMMANDS)], env)
                for name, path in peers.items():
                    os.replace(Path(out) / name, path)  # a running binary keeps its old inode
            stamp.write_text(wanted)
    return GoPeers(**peers, built=not current or force, seconds=time.monotonic() - started)


def go_test(cache: Path | None = None) -> str:
    """``go vet`` and ``go test`` over the staged sources (after a build); returns go test's output."""
    cache = cache or cache_dir()
    build(cache)
    env = go_env(cache)
    with _locked(cache):
        _run(["go", "vet", f"{IMPORT_ROOT}/..."], env)
        return _run(["go", "test", "-count=1", f"{IMPORT_ROOT}/..."], env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="build the Go benchmark peers (grpc-go servers, load client)")
    parser.add_argument("--cache", type=Path, default=None, help=f"build directory (default {cache_dir()})")
    parser.add_argument("--force", action="store_true", help="rebuild even when the cache is current")
    args = parser.parse_args(argv)
    try:
        peers = build(args.cache, force=args.force, log=lambda line: print(line, file=sys.stderr))
    except GoUnavailable as exc:
        print(exc)
        return SKIPPED_EXIT
    except GoBuildError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(json.dumps({**{k: str(v) for k, v in peers.binaries().items()},
                      "built": peers.built, "seconds": round(peers.seconds, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
