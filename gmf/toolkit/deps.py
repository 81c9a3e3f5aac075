"""Print the project's requirements (base + extras) from pyproject.toml, one per line.

Standard library only: docker/Dockerfile runs it before the package is installed, so the
dependency layer depends on pyproject.toml alone and stays cached while the code changes::

    python3 deps.py pyproject.toml dev > requirements.txt
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (the dev image has 3.11)
    import tomli as tomllib  # type: ignore[no-redef,unused-ignore]



def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    """The dependencies plus those of ``extras``, with self-references (``gmf[a,b]``) expanded."""
    project = tomllib.loads(pyproject.read_text())["project"]
    me = _norm(project["name"])
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    out: list[str] = []
    seen: set[str] = set()

    def add(reqs: list[str]) -> None:
        for req in reqs:
            m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[([^\]]*)\])?", req)
            if m and _norm(m.group(1)) == me:
                for extra in (m.group(3) or "").split(","):
                    expand(extra.strip())
            elif req not in out:
                out.append(req)

    def expand(extra: str) -> None:
        if extra and extra not in seen:
            seen.add(extra)
            if extra not in optional:
                raise SystemExit(f"unknown extra {extra!r}; pyproject.toml has {sorted(optional)}")
            add(optional[extra])

    add(project.get("dependencies", []))
    for extra in extras:
        expand(extra)
    return out


def main(argv: list[str]) -> int:
    if not argv:
        print(f"usage: {Path(sys.argv[0]).name} PYPROJECT [EXTRA ...]", file=sys.stderr)
        return 2
    print("\n".join(requirements(Path(argv[0]), argv[1:])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
