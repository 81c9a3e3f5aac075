"""io_uring under the engine's seccomp filter: detect, and pick a setting under which it works.

Docker 25+ removed io_uring_setup/enter/register from its default seccomp profile (Debian's
20.10 engine still allows them). ``security_opts`` probes once per process with a tiny
program run in the dev image, then chooses, in order:

1. the engine's default profile, when io_uring works under it;
2. ``gmf`` -- a profile generated here: allow by default, deny (EPERM) the syscalls that
   Docker's default denies to unprivileged containers (kernel modules, mounts, namespaces,
   keyrings, bpf, perf, kexec, clocks, swap, reboot...), io_uring allowed;
3. ``unconfined``, with a printed warning, when even that fails.

``--seccomp default|gmf|unconfined`` forces a choice.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from .engine import Client
from .errors import ToolkitError, note

CHOICES = ("auto", "default", "gmf", "unconfined")

# Prints 0 when io_uring_setup works, else the errno (x86_64: 425, aarch64 and others: 425 too).
PROBE = (
    "import ctypes,os\n"
    "libc=ctypes.CDLL(None,use_errno=True)\n"
    "p=ctypes.create_string_buffer(120)\n"
    "fd=libc.syscall(425,4,p)\n"
    "print(0 if fd>=0 else ctypes.get_errno())\n"
)

# Denied with EPERM: what Docker's default profile keeps from a container without extra
# capabilities (written from the documented list; io_uring_* deliberately absent).
DENIED = (
    "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module", "delete_module",
    "finit_module", "fsconfig", "fsmount", "fsopen", "fspick", "get_kernel_syms", "init_module",
    "ioperm", "iopl", "kcmp", "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie",
    "mount", "mount_setattr", "move_mount", "name_to_handle_at", "nfsservctl", "open_by_handle_at",
    "open_tree", "perf_event_open", "pivot_root", "process_vm_readv", "process_vm_writev",
    "query_module", "quotactl", "quotactl_fd", "reboot", "request_key", "setns", "settimeofday",
    "stime", "swapoff", "swapon", "_sysctl", "sysfs", "umount", "umount2", "unshare", "uselib",
    "userfaultfd", "ustat", "vm86", "vm86old", "vhangup",
)
# clone() with any namespace flag is denied; clone3 reports ENOSYS so libc falls back to clone.
CLONE_NS_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x00000080)
EPERM, ENOSYS = 1, 38


def gmf_profile() -> dict[str, Any]:
    """The ``gmf`` profile: Docker-default-like restrictions with io_uring allowed."""
    rules: list[dict[str, Any]] = [{"names": list(DENIED), "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM}]
    for flag in CLONE_NS_FLAGS:
        rules.append({
            "names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM,
            "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
        })
    rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "archMap": [
            {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
        ],
        "syscalls": rules,
    }


def option(choice: str) -> list[str]:
    """``security_opt`` entries for a choice (the engine takes the profile's JSON inline)."""
    if choice == "default":
        return []
    if choice == "unconfined":
        return ["seccomp=unconfined"]
    if choice == "gmf":
        return ["seccomp=" + json.dumps(gmf_profile(), separators=(",", ":"))]
    raise ToolkitError(f"--seccomp {choice!r}: choose one of {', '.join(CHOICES)}")


def probe(client: Client, image: str, choice: str) -> int:
    """Run PROBE in ``image`` under ``choice``; 0 when io_uring_setup works, else its errno."""
    out = client.containers.run(
        image, ["python3", "-c", PROBE], security_opt=option(choice) or None, remove=True,
        network_disabled=True, entrypoint=[],
    )
    text = out.decode().strip() if isinstance(out, bytes) else str(out).strip()
    try:
        return int(text.splitlines()[-1])
    except (ValueError, IndexError):
        return -1


@lru_cache(maxsize=8)
def detect(image: str) -> str:
    """The first choice (default, gmf, unconfined) under which io_uring works in ``image``."""
    from . import engine

    client = engine.client()
    for choice in ("default", "gmf", "unconfined"):
        err = probe(client, image, choice)
        if err == 0:
            if choice == "gmf":
                note("the engine's default seccomp profile blocks io_uring: using the toolkit's profile (gmf)")
            elif choice == "unconfined":
                note("warning: io_uring works only with seccomp=unconfined here; the container runs "
                     "without a seccomp filter (force another with --seccomp default|gmf)")
            return choice
    note("warning: io_uring_setup fails in containers on this engine under every seccomp setting "
         "(kernel.io_uring_disabled? io_uring off in the kernel?): GMF will fall back to asyncio there")
    return "default"


def security_opts(image: str, choice: str = "auto") -> list[str]:
    if choice not in CHOICES:
        raise ToolkitError(f"--seccomp {choice!r}: choose one of {', '.join(CHOICES)}")
    return option(detect(image) if choice == "auto" else choice)
