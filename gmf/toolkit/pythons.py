"""The Python versions GMF is tested on, and the Debian release whose ``python3`` each one is.

One table for the whole toolkit: ``invoke base-image/build-image/test --python V`` pick their
images from it, pyproject.toml's classifiers and ``requires-python`` must name exactly these
versions (a test checks it), and CI runs the core suite on each one that is not the host's.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ToolkitError


@dataclass(frozen=True)
class Target:
    """One tested Python: its version and the Debian suite that ships it as ``python3``."""

    python: str  # "3.13"
    suite: str   # "trixie"

    @property
    def base_tag(self) -> str:
        """The local base image (a Debian root file system plus the CA bundle)."""
        return f"gmf-base:{self.suite}"

    @property
    def dev_tag(self) -> str:
        """The dev image built from docker/Dockerfile on that base."""
        return f"gmf-dev:{self.suite}"

    @property
    def official(self) -> str:
        """The registry image re-tagged as the root file system when a registry answers."""
        return f"debian:{self.suite}-slim"


TARGETS = (Target("3.11", "bookworm"), Target("3.13", "trixie"), Target("3.14", "forky"))
DEFAULT = TARGETS[0]  # the dev image, the devcontainer and CI's native run


def versions() -> list[str]:
    return [t.python for t in TARGETS]


def select(spec: str) -> list[Target]:
    """``"all"``, one version (``"3.13"``) or a comma-separated list, in the order given."""
    by_version = {t.python: t for t in TARGETS}
    wanted = versions() if spec.strip() == "all" else [v.strip() for v in spec.split(",") if v.strip()]
    unknown = [v for v in wanted if v not in by_version]
    if unknown or not wanted:
        raise ToolkitError(f"--python {spec!r}: choose one or more of {', '.join(versions())} "
                           "(comma-separated), or all")
    return [by_version[v] for v in dict.fromkeys(wanted)]


def for_base_tag(tag: str) -> Target | None:
    """The target whose local base image is ``tag`` (None for any other image)."""
    return next((t for t in TARGETS if t.base_tag == tag), None)
