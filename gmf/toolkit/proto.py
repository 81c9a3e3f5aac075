"""Generate Python code from the .proto sources with grpcio-tools.

Generated files are committed (so a fresh clone runs the examples without a build step);
``invoke proto`` regenerates them and ``tests/test_proto.py`` checks they are current.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ProtoTarget:
    source: Path  # the .proto file
    out_dir: Path  # where *_pb2.py / *_pb2_grpc.py / *_pb2.pyi go


TARGETS: tuple[ProtoTarget, ...] = (
    ProtoTarget(ROOT / "proto/helloworld/helloworld.proto", ROOT / "examples/helloworld"),
    ProtoTarget(ROOT / "proto/routeguide/route_guide.proto", ROOT / "examples/routeguide"),
    ProtoTarget(ROOT / "proto/gmftest/gmftest.proto", ROOT / "tests/protos"),
    ProtoTarget(ROOT / "proto/streambench/streambench.proto", ROOT / "examples/streambench"),
)


def generate(out_root: Path | None = None, verbose: bool = True) -> list[Path]:
    """Run protoc (grpcio-tools) for every target; returns the files written.

    ``out_root`` redirects output (used by the freshness test) while keeping the
    relative layout of each target.
    """
    try:
        from grpc_tools import protoc  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit(
            "grpcio-tools is not installed: run `pip install -e .[dev]` (or `pip install grpcio-tools`)"
        ) from exc
    import importlib.resources

    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    written: list[Path] = []
    for target in TARGETS:
        out = target.out_dir if out_root is None else out_root / target.out_dir.relative_to(ROOT)
        out.mkdir(parents=True, exist_ok=True)
        args = [
            "grpc_tools.protoc",
            f"-I{target.source.parent}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            str(target.source),
        ]
        rc = protoc.main(args)
        if rc != 0:
            raise SystemExit(f"protoc failed ({rc}) for {target.source}")
        stem = target.source.stem
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            written.append(out / f"{stem}{suffix}")
        if verbose:
            print(f"generated {target.source.relative_to(ROOT)} -> {out}", file=sys.stderr)
    return written
