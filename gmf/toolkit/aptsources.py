"""Read the Debian mirror this machine's apt already uses (never hard-code a mirror host).

Understands both formats: one-line ``/etc/apt/sources.list`` entries and deb822
``/etc/apt/sources.list.d/*.sources`` stanzas (``Types:``/``URIs:``/``Suites:``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DEBIAN_SUITES = ("buster", "bullseye", "bookworm", "trixie", "forky", "sid", "stable", "testing", "unstable")


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]

    @property
    def is_security(self) -> bool:
        return "security" in self.uri or any(s.endswith("-security") for s in self.suites)

    @property
    def is_debian(self) -> bool:
        return any(s.split("-")[0] in DEBIAN_SUITES for s in self.suites)


def parse_one_line(text: str) -> list[AptSource]:
    out: list[AptSource] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        line = re.sub(r"\[[^\]]*\]", " ", line)  # options such as [signed-by=...]
        parts = line.split()
        if len(parts) >= 3:
            out.append(AptSource(parts[1], (parts[2],), tuple(parts[3:])))
    return out


def parse_deb822(text: str) -> list[AptSource]:
    out: list[AptSource] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for raw in stanza.splitlines():
            if raw.startswith("#") or not raw.strip():
                continue
            if raw[0] in " \t" and key:
                fields[key] += " " + raw.strip()
                continue
            key, _, value = raw.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        suites = tuple(fields.get("suites", "").split())
        components = tuple(fields.get("components", "").split())
        for uri in fields.get("uris", "").split():
            out.append(AptSource(uri, suites, components))
    return out


def host_sources(root: Path = Path("/")) -> list[AptSource]:
    """Every ``deb`` entry of the machine's apt configuration (empty when there is no apt)."""
    sources: list[AptSource] = []
    main = root / "etc/apt/sources.list"
    if main.is_file():
        sources += parse_one_line(main.read_text(errors="replace"))
    folder = root / "etc/apt/sources.list.d"
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.suffix == ".list":
                sources += parse_one_line(path.read_text(errors="replace"))
            elif path.suffix == ".sources":
                sources += parse_deb822(path.read_text(errors="replace"))
    return sources


def debian_mirror(sources: list[AptSource]) -> str | None:
    """The URI of the first Debian (non-security) archive among the sources."""
    for src in sources:
        if src.is_debian and not src.is_security and src.uri.startswith(("http://", "https://")):
            return src.uri.rstrip("/")
    return None


def debian_security_mirror(sources: list[AptSource]) -> str | None:
    for src in sources:
        if src.is_debian and src.is_security and src.uri.startswith(("http://", "https://")):
            return src.uri.rstrip("/")
    return None
