"""One error type for the toolkit: a message that names the cause and the fix.

``ToolkitError`` subclasses Invoke's ``Exit`` so that a task raising it ends with the
message on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

from invoke.exceptions import Exit


class ToolkitError(Exit):
    """A failure the user can act on; ``str(err)`` is the whole message."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message=f"error: {message}", code=code)
        self.text = message

    def __str__(self) -> str:
        return self.text


def note(message: str) -> None:
    """A one-line progress/notice message on stderr (stdout stays for command output)."""
    import sys

    print(f"gmf: {message}", file=sys.stderr, flush=True)
