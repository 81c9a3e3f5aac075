"""Regenerate the connectrpc stubs beside this file (committed, like the grpcio ones).

python bench/peers/connect_gen/generate.py   # needs grpcio-tools and protoc-gen-connectrpc ([dev])

The stubs import their messages relatively (``from .helloworld_pb2 import ...``); the package's
``__init__`` points those names at the committed grpcio-generated modules, so one descriptor
of each .proto is loaded.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


def main() -> None:
    from grpc_tools import protoc

    plugin = shutil.which("protoc-gen-connectrpc")
    if plugin is None:
        raise SystemExit("protoc-gen-connectrpc not found: pip install -e '.[dev]'")
    args = [
        "grpc_tools.protoc",
        f"-I{ROOT / 'proto/helloworld'}",
        f"-I{ROOT / 'proto/routeguide'}",
        f"--plugin=protoc-gen-connectrpc={plugin}",
        f"--connectrpc_out={HERE}",
        "--connectrpc_opt=protobuf=google",
        str(ROOT / "proto/helloworld/helloworld.proto"),
        str(ROOT / "proto/routeguide/route_guide.proto"),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    print(f"generated {', '.join(p.name for p in sorted(HERE.glob('*_connect.py')))}")


if __name__ == "__main__":
    sys.exit(main())
