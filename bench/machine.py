"""Describe the machine and the code a run measured (for the report header)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import ROOT


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _run(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10, cwd=ROOT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


def git_revision() -> str:
    rev = _run(["git", "rev-parse", "--short", "HEAD"]) or "no-commit"
    if _run(["git", "status", "--porcelain", "--untracked-files=no"]):
        rev += "-dirty"
    return rev


def h2load_version() -> str:
    out = _run(["h2load", "--version"])
    return out.splitlines()[0] if out else "not found"


def describe() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "h2load": h2load_version(),
        "git": git_revision(),
    }


def one_line(machine: dict[str, Any]) -> str:
    return (
        f"{machine.get('nproc')} CPUs ({machine.get('cpu_model')}), Linux {machine.get('kernel')}, "
        f"Python {machine.get('python')}, {machine.get('h2load')}, commit {machine.get('git')}"
    )


def proc_stats() -> Iterator[tuple[int, str, list[str]]]:
    """(pid, command name, the fields after the name) of /proc/PID/stat for every process."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        yield int(entry), stat[stat.find("(") + 1 : stat.rfind(")")], stat[stat.rfind(")") + 2 :].split()


def _proc_times() -> dict[int, tuple[str, int]]:
    """pid -> (command name, utime + stime in clock ticks) for every process."""
    return {pid: (name, int(fields[11]) + int(fields[12])) for pid, name, fields in proc_stats()}


def busy_processes(interval: float = 0.5, threshold: float = 10.0) -> list[tuple[int, str, float]]:
    """Other processes using more than ``threshold`` % of a CPU right now (they skew the numbers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    before = _proc_times()
    time.sleep(interval)
    after = _proc_times()
    me = os.getpid()
    busy = []
    for pid, (name, total) in after.items():
        if pid == me or pid not in before:
            continue
        percent = (total - before[pid][1]) / ticks / interval * 100
        if percent >= threshold:
            busy.append((pid, name, round(percent, 1)))
    return sorted(busy, key=lambda item: -item[2])


def cpu_seconds(pids: list[int]) -> float | None:
    """User + system CPU time of these processes (all their threads), in seconds; None if one
    is gone. From /proc/PID/stat, so robust to whatever else the machine runs."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        fields = stat[stat.rfind(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total / ticks
