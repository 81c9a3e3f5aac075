"""The HTTP/2 core's abuse limits (docs/security.md, "HTTP/2 frame level"): their settings
and state (:class:`AbuseLimits`) and the checks (:class:`AbuseGuard`, a base of
``H2ServerConnection``).

Frames that make us work without serving anything draw on a budget that refills whenever we
send response HEADERS or DATA; PINGs follow grpc-core's ping-strike policy; control responses
waiting in the output are capped. The three counters the receive path touches on every
frame (``_responded``, ``_budget``, ``_pending_control``) stay on the connection object; the
rest waits in ``AbuseLimits``.
"""

from __future__ import annotations

from collections.abc import Callable

from . import frames as f
from .h2events import H2ConnectionError

RESET_BURST = 1000  # client resets tolerated before the reset/open ratio is enforced
RESET_MEMORY = 128  # streams we reset whose in-flight frames are still ignored (most recent;
# a forgotten one only costs an extra RST_STREAM, and the record stays a few KiB per connection)

SKIPPED_MEMORY = 16  # ranges of skipped stream ids remembered (a forgotten one changes only
# the error code of the connection error: STREAM_CLOSED instead of PROTOCOL_ERROR)

# A header block whose encoded size or decoded header list goes beyond this many times the
# advertised SETTINGS_MAX_HEADER_LIST_SIZE is not materialized: the connection is cut off
# (its HPACK state cannot be kept consistent without decoding the rest). Blocks between the
# limit and this are decoded and the request alone is refused (RESOURCE_EXHAUSTED above).
HEADER_HARD_FACTOR = 4
NEVER = float("-inf")  # the time of the last PING before the first


class AbuseLimits:
    """Abuse-limit settings and the PING state: only unusual frames touch them. (Kept off the
    connection object: more than 30 instance attributes would cost CPython's fast
    attribute access on every frame.)"""

    __slots__ = (
        "max_unproductive",
        "max_pending_control",
        "min_ping_interval",
        "max_ping_strikes",
        "clock",
        "ping_strikes",
        "last_ping",
        "settings_unacked",
        "reset_ids",
        "remote_resets",
        "max_header_block",
        "skipped",
    )

    def __init__(
        self,
        max_unproductive: int,
        max_pending_control: int,
        min_ping_interval: float,
        max_ping_strikes: int,
        clock: Callable[[], float],
    ) -> None:
        self.max_unproductive = max_unproductive
        self.max_pending_control = max_pending_control
        self.min_ping_interval = min_ping_interval
        self.max_ping_strikes = max_ping_strikes
        self.clock = clock
        self.ping_strikes = 0
        self.last_ping = NEVER
        self.settings_unacked = False
        # Streams we reset: the client may have frames for them in flight, which are ignored
        # (RFC 9113 5.1). Frames on any other closed stream are answered with STREAM_CLOSED.
        self.reset_ids: dict[int, None] = {}
        self.remote_resets = 0  # streams the client reset ("rapid reset", CVE-2023-44487)
        self.max_header_block = 0  # bytes of a header block before it is cut off (set by the connection)
        # Ranges of stream ids the client skipped (never opened, so implicitly closed: RFC 9113
        # 5.1.1), the most recent SKIPPED_MEMORY of them: HEADERS on one is PROTOCOL_ERROR,
        # not STREAM_CLOSED. gRPC clients never skip ids; the list stays empty.
        self.skipped: list[tuple[int, int]] = []


class AbuseGuard:
    """The checks, as methods of the connection (``H2ServerConnection`` derives from this and
    sets the attributes below in its ``__init__``)."""

    _responded: bool  # we sent response HEADERS or DATA since the last rearm
    _budget: int  # unproductive frames left; < 0: cut off
    _pending_control: int  # control responses queued since the runtime last took the output
    _limits: AbuseLimits
    _out: list[bytes | bytearray | memoryview]

    def _waste(self, what: str) -> None:
        """A frame that makes us work without serving anything: SETTINGS, PRIORITY, empty
        fragments, frames for closed streams, streams we must reset (CVE-2019-9513/9514/
        9515/9518). The budget refills whenever we send response HEADERS or DATA."""
        if self._responded:
            self._rearm()
        self._budget -= 1
        if self._budget < 0:
            raise H2ConnectionError(f.ENHANCE_YOUR_CALM, f"too many frames without useful work ({what})")

    def _rearm(self) -> None:
        self._responded = False
        limits = self._limits
        self._budget = limits.max_unproductive
        limits.ping_strikes = 0
        limits.last_ping = NEVER

    def _on_ping(self) -> None:
        """grpc-core's ping policy: a PING sooner than ``keepalive_min_ping_interval`` after
        the previous one is a strike unless we sent HEADERS/DATA in between; more than
        ``max_ping_strikes`` strikes -> GOAWAY ENHANCE_YOUR_CALM "too_many_pings"."""
        if self._responded:
            self._rearm()
        limits = self._limits
        now = limits.clock()
        if now - limits.last_ping < limits.min_ping_interval:
            limits.ping_strikes += 1
            if limits.ping_strikes > limits.max_ping_strikes:
                raise H2ConnectionError(f.ENHANCE_YOUR_CALM, "too_many_pings")
        limits.last_ping = now

    def _control(self, frame: bytes) -> None:
        """Queue a control response (PING/SETTINGS ACK, RST_STREAM): at most
        ``max_pending_control_frames`` wait for the runtime to take the output."""
        self._pending_control += 1
        if self._pending_control > self._limits.max_pending_control:
            raise H2ConnectionError(f.ENHANCE_YOUR_CALM, "too many control frames queued")
        self._out.append(frame)
