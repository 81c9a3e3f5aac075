"""Where workers run: Glommio-style placements mapped to per-worker CPU sets.

=====================  =====================================================================
``unbound(n)``         n workers, not pinned: the kernel schedules them on any allowed CPU.
``fixed(cpu)``         one worker pinned to ``cpu`` (the seed's ``Placement::Fixed(0)``).
``fenced(cpus, n)``    n workers (default ``len(cpus)``), each allowed on every CPU of ``cpus``.
``max_spread(n)``      n workers (default: one per allowed CPU), each pinned to one CPU, chosen
                       to be as far apart as possible: different packages, then different
                       physical cores, hyper-thread siblings last. Wraps around when n > CPUs.
``max_pack(n)``        n workers pinned to CPUs as close together as possible: siblings of one
                       core first, then the next core of the same package.
=====================  =====================================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def allowed_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def _topology(cpu: int) -> tuple[int, int]:
    base = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
    try:
        package = int((base / "physical_package_id").read_text())
        core = int((base / "core_id").read_text())
    except (OSError, ValueError):
        return (0, cpu)
    return (package, core)


def _spread_order(cpus: list[int]) -> list[int]:
    """CPUs ordered so that consecutive picks share as little hardware as possible."""
    cores: dict[tuple[int, int], list[int]] = {}
    for cpu in cpus:
        cores.setdefault(_topology(cpu), []).append(cpu)
    packages: dict[int, list[list[int]]] = {}
    for (package, _core), siblings in sorted(cores.items()):
        packages.setdefault(package, []).append(sorted(siblings))
    order: list[int] = []
    depth = max(len(s) for s in cores.values())
    for thread in range(depth):
        layers = [[c[thread] for c in pkg_cores if len(c) > thread] for pkg_cores in packages.values()]
        longest = max(len(layer) for layer in layers)
        for i in range(longest):
            order += [layer[i] for layer in layers if i < len(layer)]
    return order


def _pack_order(cpus: list[int]) -> list[int]:
    return sorted(cpus, key=lambda c: (*_topology(c), c))


def _describe(cpus: list[int]) -> str:
    return ",".join(str(c) for c in cpus)


@dataclass(frozen=True)
class Placement:
    kind: str
    count: int | None = None
    cpus: tuple[int, ...] | None = None

    # -- constructors (Glommio's names) ---------------------------------------------
    @classmethod
    def unbound(cls, n: int | None = None) -> Placement:
        return cls("unbound", _check_count(n))

    @classmethod
    def fixed(cls, cpu: int) -> Placement:
        return cls("fixed", 1, (int(cpu),))

    @classmethod
    def fenced(cls, cpus: list[int] | tuple[int, ...] | set[int], n: int | None = None) -> Placement:
        cpu_tuple = tuple(sorted({int(c) for c in cpus}))
        if not cpu_tuple:
            raise ValueError(f"Placement.fenced() needs at least one CPU; allowed CPUs: {_describe(allowed_cpus())}")
        return cls("fenced", _check_count(n), cpu_tuple)

    @classmethod
    def max_spread(cls, n: int | None = None) -> Placement:
        return cls("max_spread", _check_count(n))

    @classmethod
    def max_pack(cls, n: int | None = None) -> Placement:
        return cls("max_pack", _check_count(n))

    @classmethod
    def parse(cls, text: str) -> Placement:
        """The command-line syntax: ``max_spread``, ``max_pack``, ``unbound`` (each with an
        optional ``:N`` worker count), ``fixed:CPU``, ``fenced:CPU,CPU,...``."""
        kind, _, arg = text.strip().partition(":")
        try:
            numbers = [int(n) for n in arg.split(",")] if arg else []
        except ValueError:
            numbers = [-1, -1]  # matches no form below
        if kind == "fixed" and len(numbers) == 1:
            return cls.fixed(numbers[0])
        if kind == "fenced" and numbers:
            return cls.fenced(numbers)
        if kind in ("max_spread", "max_pack", "unbound") and len(numbers) <= 1:
            return getattr(cls, kind)(numbers[0] if numbers else None)
        raise ValueError(
            f"invalid placement {text!r}: expected max_spread[:N], max_pack[:N], unbound[:N], fixed:CPU "
            "or fenced:CPU,CPU,..."
        )

    # -- resolution -----------------------------------------------------------------
    def cpu_sets(self, available: list[int] | None = None) -> list[tuple[int, ...] | None]:
        """One entry per worker: the CPUs it may run on, or None when it is not pinned."""
        allowed = sorted(available) if available is not None else allowed_cpus()
        if self.cpus is not None:
            outside = [c for c in self.cpus if c not in allowed]
            if outside:
                raise ValueError(
                    f"CPU {_describe(outside)} is not available to this process; allowed CPUs: {_describe(allowed)}"
                )
        if self.kind == "fixed":
            assert self.cpus is not None
            return [self.cpus]
        if self.kind == "unbound":
            return [None] * (self.count or len(allowed))
        if self.kind == "fenced":
            assert self.cpus is not None
            return [self.cpus] * (self.count or len(self.cpus))
        order = _spread_order(allowed) if self.kind == "max_spread" else _pack_order(allowed)
        n = self.count or len(allowed)
        return [(order[i % len(order)],) for i in range(n)]

    def __str__(self) -> str:
        if self.kind == "fixed" and self.cpus:
            return f"Placement.fixed({self.cpus[0]})"
        args = ", ".join(str(x) for x in ((list(self.cpus) if self.cpus else None), self.count) if x is not None)
        return f"Placement.{self.kind}({args})"


def _check_count(n: int | None) -> int | None:
    if n is None:
        return None
    if int(n) < 1:
        raise ValueError(f"the number of workers must be at least 1 (got {n}); allowed CPUs: {_describe(allowed_cpus())}")
    return int(n)
