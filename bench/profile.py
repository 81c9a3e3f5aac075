"""Where a GMF worker's time goes under load: py-spy samples, grouped by layer.

    python -m bench.profile FILE.txt        # categorise a `py-spy record --format raw` file

The harness records one worker per profiled point (``py-spy record --native --format raw``,
in a run of its own so the measured runs are not slowed by sampling) and reports each
category's share of the samples. A sample counts for the first category (in this order)
that matches its stack:

- ``idle (waiting for I/O)``: the loop blocks for completions (``Ring._wait``, the io_uring
  binding's ``wait``, a selector's ``select``);
- ``cyclic GC``: CPython's collector is on the stack (``gc_collect_main`` and callees);
- ``syscalls (io_uring, send/recv, epoll)``: the leaf is a kernel entry or the io_uring binding's call;
- ``malloc/memcpy``: the leaf is the allocator or a memory copy (native frames only);
- ``protobuf`` when the leaf is protobuf's C runtime (upb);
- then by the innermost Python frame: ``HTTP/2 core`` (gmf/protocol, hpack, hyperframe),
  ``RPC layer`` (gmf/rpc), ``runtime`` (gmf/runtime), ``asyncio``, ``protobuf``
  (google/protobuf, generated ``*_pb2``), ``handler`` (the example servicers), ``other``.

"Self" functions are the innermost Python frame of each sample, with their share.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CATEGORIES = (
    "idle (waiting for I/O)",
    "cyclic GC",
    "syscalls (io_uring, send/recv, epoll)",
    "malloc/memcpy",
    "HTTP/2 core",
    "RPC layer",
    "runtime",
    "asyncio",
    "protobuf",
    "handler",
    "other",
)
_THREAD_START = "Thread._bootstrap "  # the outermost Python frame of every non-main thread
_PY_FRAME = re.compile(r"^(?P<func>.+) \((?P<file>[^()]*\.py[x]?):(?P<line>\d+)\)$")
_IDLE = ("Ring._wait", "ring_wait", "EpollSelector.select", "select")
_GC = ("gc_collect_main", "gc_collect_with_callback", "_PyObject_GC_Collect", "collect_generations")
_SYSCALL = (
    "io_uring_enter", "io_uring_submit", "__io_uring", "syscall", "epoll_wait", "epoll_pwait", "__libc_send",
    "__libc_recv", "sendto", "recvfrom", "__send", "__recv", "__libc_write", "__libc_read", "writev", "readv",
)
_ALLOC = ("malloc", "free", "realloc", "calloc", "memcpy", "memmove", "_int_malloc", "_int_free", "cfree",
          "pymalloc", "PyObject_Malloc", "PyObject_Free", "_PyObject_Free", "_PyObject_Malloc")
_LAYERS = (
    ("HTTP/2 core", ("gmf/protocol/", "hpack/", "hyperframe/")),
    ("RPC layer", ("gmf/rpc/", "gmf/metrics.py", "gmf/logs.py")),
    ("runtime", ("gmf/runtime/", "_uring.")),
    ("asyncio", ("asyncio/", "uvloop")),
    ("protobuf", ("google/protobuf/", "_pb2.py", "_pb2_grpc.py")),
    ("handler", ("examples/", "streambench_service.py", "server.py")),
)


@dataclass
class Breakdown:
    samples: int = 0
    categories: Counter[str] = field(default_factory=Counter)
    functions: Counter[str] = field(default_factory=Counter)  # innermost Python frame ("self")
    native: bool = False  # the file had native frames
    other_threads: int = 0  # samples of threads other than the main (loop) thread: left out

    def shares(self) -> list[tuple[str, float]]:
        total = self.samples or 1
        return [(name, self.categories[name] / total) for name in CATEGORIES if self.categories[name]]

    def top(self, n: int = 12) -> list[tuple[str, float]]:
        total = self.samples or 1
        return [(name, count / total) for name, count in self.functions.most_common(n)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "native": self.native,
            "other_threads": self.other_threads,
            "categories": dict(self.shares()),
            "self_functions": dict(self.top(15)),
        }


def _short(path: str) -> str:
    path = "/" + path.lstrip("/")
    for marker in ("/gmf/", "/asyncio/", "/google/", "/examples/", "/hpack/", "/site-packages/"):
        i = path.rfind(marker)
        if i >= 0:
            return path[i + 1 :]
    return path.rsplit("/", 1)[-1]


def categorise(frames: list[str]) -> tuple[str, str | None]:
    """(category, innermost Python function) of one stack, outermost frame first."""
    leaf = frames[-1] if frames else ""
    innermost: tuple[str, str] | None = None
    for frame in reversed(frames):
        m = _PY_FRAME.match(frame)
        if m:
            innermost = (m.group("func"), m.group("file"))
            break
    function = f"{innermost[0]} ({_short(innermost[1])})" if innermost else None
    if innermost is not None and innermost[0] in _IDLE:
        return CATEGORIES[0], function
    if any(name in frame for frame in frames for name in _GC):
        return "cyclic GC", function
    if not _PY_FRAME.match(leaf):
        leaf_name, _, where = leaf.partition(" (")
        if "_message" in where or leaf_name.startswith("upb_"):  # protobuf's C (upb) runtime
            return "protobuf", function
        if any(leaf_name == s or leaf_name.startswith(s) for s in _SYSCALL):
            return "syscalls (io_uring, send/recv, epoll)", function
        if any(leaf_name == s or leaf_name.startswith(s) for s in _ALLOC):
            return "malloc/memcpy", function
    if innermost is None:
        return "other", function
    path = innermost[1]
    for name, markers in _LAYERS:
        if any(marker in path for marker in markers):
            return name, function
    return "other", function


def parse_raw(text: str) -> Breakdown:
    """A ``py-spy record --format raw`` file: one ``frame;frame;...;frame COUNT`` line per stack.
    Only the main thread counts (the event loop's; native sampling also sees threads asleep)."""
    out = Breakdown()
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if any(f.startswith(_THREAD_START) for f in frames):  # e.g. the watchdog's thread, asleep
            out.other_threads += count
            continue
        if not out.native and any(not _PY_FRAME.match(f) for f in frames):
            out.native = True
        category, function = categorise(frames)
        out.samples += count
        out.categories[category] += count
        if function:
            out.functions[function] += count
    return out


def record(pid: int, seconds: float, out: Path, rate: int = 200, native: bool = True) -> str | None:
    """Sample ``pid`` for ``seconds`` into ``out``; returns None, or why it could not."""
    if shutil.which("py-spy") is None:
        return "py-spy not found (pip install py-spy; it is in the [dev] extra)"
    cmd = ["py-spy", "record", "--format", "raw", "--rate", str(rate), "--duration", str(max(1, round(seconds))),
           "--output", str(out), "--pid", str(pid)]
    if native:
        cmd.append("--native")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    except subprocess.TimeoutExpired:
        return "py-spy did not finish"
    if proc.returncode != 0 or not out.exists():
        if native:  # native unwinding needs more than plain sampling; try without
            return record(pid, seconds, out, rate, native=False)
        return f"py-spy failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-300:]}"
    return None


def one_line(entry: dict[str, Any]) -> str:
    """A profile entry (``Breakdown.to_dict()``) in one line: the biggest categories."""
    cats = sorted(entry.get("categories", {}).items(), key=lambda kv: -kv[1])
    return f"{entry.get('samples', 0):,} samples; " + ", ".join(f"{name} {share * 100:.0f}%" for name, share in cats[:6])


def markdown(title: str, breakdown: Breakdown) -> str:
    lines = [f"**{title}** ({breakdown.samples:,} samples{'' if breakdown.native else ', Python frames only'})", "",
             "| where | share |", "|---|---:|"]
    lines += [f"| {name} | {share * 100:.1f}% |" for name, share in breakdown.shares()]
    lines += ["", "| self (innermost Python function) | share |", "|---|---:|"]
    lines += [f"| `{name}` | {share * 100:.1f}% |" for name, share in breakdown.top()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__.splitlines()[2].strip(), file=sys.stderr)
        return 2
    print(markdown(args[0], parse_raw(Path(args[0]).read_text(errors="replace"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
