"""Waiting for io_uring completions without holding the GIL.

The ``liburing`` binding keeps the GIL while it blocks in ``io_uring_enter``. When the process
has other Python threads (executor workers, a thread calling ``call_soon_threadsafe``), the
ring waits instead in a raw ``io_uring_enter(2)`` called through ``ctypes``, which releases
the GIL.
"""

from __future__ import annotations

import ctypes
import errno
import os

# Constants of io_uring_enter(2); the syscall number is the same on every architecture.
_NR_IO_URING_ENTER = 426
_ENTER_GETEVENTS = 1
_ENTER_EXT_ARG = 8


class _KernelTimespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_int64)]


class _GeteventsArg(ctypes.Structure):
    _fields_ = [("sigmask", ctypes.c_uint64), ("sigmask_sz", ctypes.c_uint32),
                ("min_wait_usec", ctypes.c_uint32), ("ts", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint,
                     ctypes.c_void_p, ctypes.c_size_t]


class GilFreeWaiter:
    """Blocks in io_uring_enter(GETEVENTS) through ctypes, which releases the GIL."""

    def __init__(self, ring_fd: int) -> None:
        self._fd = ring_fd
        self._ts = _KernelTimespec()
        self._arg = _GeteventsArg(0, 0, 0, ctypes.addressof(self._ts))
        self._arg_addr = ctypes.addressof(self._arg)
        self._arg_size = ctypes.sizeof(self._arg)

    def wait(self, timeout: float | None) -> None:
        if timeout is None:
            ret = _syscall(_NR_IO_URING_ENTER, self._fd, 0, 1, _ENTER_GETEVENTS, None, 0)
        else:
            sec = int(timeout)
            self._ts.tv_sec = sec
            self._ts.tv_nsec = int((timeout - sec) * 1e9)
            ret = _syscall(_NR_IO_URING_ENTER, self._fd, 0, 1, _ENTER_GETEVENTS | _ENTER_EXT_ARG,
                           self._arg_addr, self._arg_size)
        if ret < 0:
            err = ctypes.get_errno()
            if err not in (errno.ETIME, errno.EINTR, errno.EAGAIN, errno.EBUSY):
                raise OSError(err, os.strerror(err))
