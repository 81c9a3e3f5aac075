"""Logging: every record of the ``gmf`` loggers carries the worker it came from, and the
optional access log (``gmf.access``, one line per finished RPC).

The tag is ``record.gmf_worker``: ``w0``, ``w1``, ... in workers, ``sup`` in the supervisor
process. Use ``%(gmf_worker)s`` in your own formatter (for handlers on other loggers, add
``WorkerTag()`` to the handler's filters so records of other libraries carry it too).
"""

from __future__ import annotations

import logging
import os

from .metrics import code_name

LOGGER = "gmf"
ACCESS_LOGGER = "gmf.access"
FORMAT = "%(asctime)s gmf[%(process)d] %(gmf_worker)s %(levelname)s %(message)s"

_tag = "sup"
_access = logging.getLogger(ACCESS_LOGGER)


class WorkerTag(logging.Filter):
    """Sets ``record.gmf_worker`` (one attribute store per record; the tag is set once per
    process, after fork)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.gmf_worker = _tag
        return True


_FILTER = WorkerTag()
for _name in (LOGGER, ACCESS_LOGGER):
    logging.getLogger(_name).addFilter(_FILTER)


def set_worker(worker_id: int) -> None:
    """Called once in a worker right after fork."""
    global _tag
    _tag = f"w{worker_id}"


def configure() -> None:
    """GMF's default handler on the ``gmf`` logger (level from GMF_LOG_LEVEL), unless the
    application configured logging itself."""
    logger = logging.getLogger(LOGGER)
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(_FILTER)  # also tags records of any other gmf.* logger
    logger.addHandler(handler)
    logger.setLevel(os.environ.get("GMF_LOG_LEVEL", "INFO").upper())


def enable_access_log() -> None:
    """access_log=True asks for the lines: show them even when GMF_LOG_LEVEL is higher."""
    if _access.level == logging.NOTSET:
        _access.setLevel(logging.INFO)


def log_access(path: str, code: int, seconds: float, peer: str) -> None:
    """``/pkg.Service/Method OK 0.412ms ipv4:127.0.0.1:50312``"""
    _access.info("%s %s %.3fms %s", path, code_name(code), seconds * 1000.0, peer)
