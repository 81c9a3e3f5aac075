"""Counters: one ``WorkerMetrics`` per worker (plain ints and dicts bumped on the hot path),
cumulative snapshots that workers send to the supervisor, and their sums.

Workers share nothing, so each counts alone; the supervisor adds the snapshots up (see
``gmf.supervisor``) and keeps the last counts of a worker that died, so totals never go back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import grpc

# Counted under this method label: requests for methods that are not registered (their paths
# come from clients, so they must not become label values).
UNKNOWN_METHOD = "unknown"

_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


def code_name(code: int) -> str:
    """``0`` -> ``"OK"``, ``12`` -> ``"UNIMPLEMENTED"`` (unknown codes stay numbers)."""
    return _CODE_NAMES.get(code, str(code))


class WorkerMetrics:
    """The counters of one worker. Incremented inline: no locks, no calls, no allocation."""

    __slots__ = ("accepted", "refused", "bytes_received", "bytes_sent", "started", "finished")

    def __init__(self) -> None:
        self.accepted = 0
        self.refused = 0
        self.bytes_received = 0
        self.bytes_sent = 0
        self.started: dict[str, int] = {}  # method path -> RPCs started
        self.finished: dict[tuple[str, int], int] = {}  # (method path, status code) -> RPCs finished

    def rpc_started(self, method: str) -> None:
        started = self.started
        started[method] = started.get(method, 0) + 1

    def rpc_finished(self, method: str, code: int) -> None:
        finished = self.finished
        key = (method, code)
        finished[key] = finished.get(key, 0) + 1

    def snapshot(self, open_connections: int) -> Snapshot:
        return Snapshot(
            accepted=self.accepted,
            open=open_connections,
            refused=self.refused,
            bytes_received=self.bytes_received,
            bytes_sent=self.bytes_sent,
            started=dict(self.started),
            finished=dict(self.finished),
        )


@dataclass
class Snapshot:
    """Cumulative counts of one worker (or a sum of several) at one moment."""

    accepted: int = 0
    open: int = 0  # a gauge: connections open now
    refused: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0
    started: dict[str, int] = field(default_factory=dict)
    finished: dict[tuple[str, int], int] = field(default_factory=dict)

    def add(self, other: Snapshot, gauges: bool = True) -> None:
        """Add ``other``'s counts (and its gauge unless ``gauges`` is False: a dead worker's
        connections are not open any more)."""
        self.accepted += other.accepted
        self.refused += other.refused
        self.bytes_received += other.bytes_received
        self.bytes_sent += other.bytes_sent
        if gauges:
            self.open += other.open
        for method, n in other.started.items():
            self.started[method] = self.started.get(method, 0) + n
        for key, n in other.finished.items():
            self.finished[key] = self.finished.get(key, 0) + n

    def to_bytes(self, seq: int) -> bytes:
        """One message for the supervisor; ``seq`` answers a stats request (0: periodic)."""
        return json.dumps({
            "seq": seq,
            "c": [self.accepted, self.open, self.refused, self.bytes_received, self.bytes_sent],
            "s": self.started,
            "f": [[m, code, n] for (m, code), n in self.finished.items()],
        }).encode()

    @staticmethod
    def from_bytes(data: bytes) -> tuple[int, Snapshot]:
        msg = json.loads(data)
        accepted, open_, refused, received, sent = msg["c"]
        finished = {(m, int(code)): int(n) for m, code, n in msg["f"]}
        return int(msg["seq"]), Snapshot(accepted, open_, refused, received, sent, dict(msg["s"]), finished)

    def as_dict(self) -> dict[str, Any]:
        by_method: dict[str, dict[str, int]] = {}
        for (method, code), n in sorted(self.finished.items()):
            by_method.setdefault(method, {})[code_name(code)] = n
        return {
            "connections_accepted": self.accepted,
            "connections_open": self.open,
            "connections_refused": self.refused,
            "bytes_received": self.bytes_received,
            "bytes_sent": self.bytes_sent,
            "rpcs_started": dict(sorted(self.started.items())),
            "rpcs_finished": by_method,
        }


@dataclass
class WorkerStats:
    """What the supervisor knows of one worker slot: counts of its dead predecessors
    (``retired``) plus the latest snapshot of the live process."""

    pid: int
    alive: bool
    restarts: int
    retired: Snapshot
    current: Snapshot

    def total(self) -> Snapshot:
        out = Snapshot()
        out.add(self.retired, gauges=False)
        out.add(self.current, gauges=self.alive)
        return out


def aggregate(workers: dict[int, WorkerStats]) -> dict[str, Any]:
    """The dict ``ServerHandle.stats()`` returns: the sums at top level, and ``workers``
    (worker id -> the same keys plus pid, alive, restarts)."""
    total = Snapshot()
    per_worker: dict[int, dict[str, Any]] = {}
    for worker_id, stats in sorted(workers.items()):
        snap = stats.total()
        total.add(snap)
        per_worker[worker_id] = {**snap.as_dict(), "pid": stats.pid, "alive": stats.alive, "restarts": stats.restarts}
    return {**total.as_dict(), "workers": per_worker}
