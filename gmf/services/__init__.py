"""Standard gRPC services for GmfServer: health checking and server reflection.

``GmfServer(health=True, reflection=True)`` enables both; or call :func:`enable_health` /
:func:`enable_reflection` on a server before ``serve()``.
"""

from .health import NOT_SERVING, SERVICE_UNKNOWN, SERVING, UNKNOWN, Health, enable_health, health_status
from .reflection import enable_reflection

__all__ = [
    "NOT_SERVING",
    "SERVICE_UNKNOWN",
    "SERVING",
    "UNKNOWN",
    "Health",
    "enable_health",
    "enable_reflection",
    "health_status",
]
