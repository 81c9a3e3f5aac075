"""Read the Debian mirror this machine's apt already uses (never hard-code a mirror host).

Understands both formats: one-line ``/etc/apt/sources.list`` entries and deb822
``/etc/apt/sources.list.d/*.sources`` stanzas (``Types:``/``URIs:``/``Suites:``).
"""

from __future__ import annotations

import re
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

from .errors import ToolkitError

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


# --------------------------------------------------------------------------- suites on a mirror


@dataclass(frozen=True)
class Release:
    """The fields of a suite's ``dists/SUITE/Release`` file that the toolkit uses."""

    suite: str
    codename: str
    valid_until: datetime | None  # testing and the security suites expire; stable releases do not

    def expired(self, now: datetime | None = None) -> bool:
        return self.valid_until is not None and self.valid_until < (now or datetime.now(UTC))


def parse_release(text: str) -> Release:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line[0] in " \t":
            continue  # checksum lists
        key, _, value = line.partition(":")
        fields[key.strip().lower()] = value.strip()
    until = fields.get("valid-until")
    return Release(suite=fields.get("suite", ""), codename=fields.get("codename", ""),
                   valid_until=parsedate_to_datetime(until) if until else None)


def fetch_release(mirror: str, suite: str, timeout: float = 30.0) -> Release | None:
    """``MIRROR/dists/SUITE/Release``, or None when the mirror has no such suite (HTTP 404).

    Raises ToolkitError when the mirror does not answer. Proxies come from the environment
    (urllib reads ``http(s)_proxy``) and HTTPS mirrors are verified against the CA bundle.
    """
    from .proxy import ca_bundle  # proxy imports errors only; kept local so parsing needs nothing

    url = f"{mirror.rstrip('/')}/dists/{suite}/Release"
    bundle = ca_bundle()
    context = ssl.create_default_context(cafile=str(bundle)) if bundle and url.startswith("https:") else None
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as reply:
            return parse_release(reply.read().decode("utf-8", errors="replace"))
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise ToolkitError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ToolkitError(f"the Debian mirror does not answer ({url}: {reason}): pass another with --mirror") from None
