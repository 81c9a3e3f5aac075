"""Generate Python code from the .proto sources with grpcio-tools.

Generated files are committed (so a fresh clone runs the examples without a build step);
``invoke proto`` regenerates them and ``tests/peers/test_peers.py::test_generated_code_is_current``
checks they are current.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from . import checkout


@dataclass(frozen=True)
class ProtoTarget:
    source: Path  # the .proto file, relative to the checkout
    out_dir: Path  # where *_pb2.py / *_pb2_grpc.py / *_pb2.pyi go, relative to the checkout


TARGETS: tuple[ProtoTarget, ...] = (
    ProtoTarget(Path("proto/helloworld/helloworld.proto"), Path("examples/helloworld")),
    ProtoTarget(Path("proto/routeguide/route_guide.proto"), Path("examples/routeguide")),
    ProtoTarget(Path("proto/gmftest/gmftest.proto"), Path("tests/protos")),
    ProtoTarget(Path("proto/inventory/inventory.proto"), Path("tests/protos")),
    ProtoTarget(Path("proto/streambench/streambench.proto"), Path("examples/streambench")),
    # gRPC's interop test service (grpc.testing): modules empty_pb2, messages_pb2, test_pb2
    *(ProtoTarget(Path(f"proto/grpc/testing/{name}.proto"), Path("tests/protos")) for name in ("empty", "messages", "test")),
)


def generate(out_root: Path | None = None, verbose: bool = True) -> list[Path]:
    """Run protoc (grpcio-tools) for every target; returns the files written.

    ``out_root`` redirects output (used by the freshness test) while keeping the
    layout of each target relative to the checkout.
    """
    try:
        from grpc_tools import protoc  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit(
            "grpcio-tools is not installed: run `pip install -e .[dev]` (or `pip install grpcio-tools`)"
        ) from exc
    import importlib.resources

    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    root = checkout.root()
    written: list[Path] = []
    for target in TARGETS:
        source = root / target.source
        out = (out_root or root) / target.out_dir
        out.mkdir(parents=True, exist_ok=True)
        args = [
            "grpc_tools.protoc",
            f"-I{source.parent}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            str(source),
        ]
        rc = protoc.main(args)
        if rc != 0:
            raise SystemExit(f"protoc failed ({rc}) for {source}")
        stem = target.source.stem
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            written.append(out / f"{stem}{suffix}")
        if verbose:
            print(f"generated {target.source} -> {out}", file=sys.stderr)
    return written
