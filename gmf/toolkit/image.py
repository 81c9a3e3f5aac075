"""The two images: the local base (``invoke base-image``) and the dev image (``invoke build-image``).

The base is one local tag, ``gmf-base:bookworm``, made in two layers:

1. a bookworm root file system, tagged ``gmf-base:bookworm-rootfs``: the official
   ``python:3.11-slim-bookworm`` re-tagged when a registry answers, else
   ``debootstrap --variant=minbase`` from the host's own apt mirror + ``docker import``;
2. on top of it, the CA bundle to trust (proxies that intercept TLS), labelled with its
   sha256 so a changed bundle only rebuilds this small layer.

docker/Dockerfile builds FROM that tag, and so does the devcontainer (.devcontainer), so an
engine that cannot pull anything works after ``invoke base-image``.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import aptsources, checkout, engine, proxy
from .engine import Client
from .errors import ToolkitError, note

DOCKERFILE = "docker/Dockerfile"
DEV_TAG = "gmf-dev:bookworm"
BASE_TAG = "gmf-base:bookworm"
OFFICIAL_BASE = "python:3.11-slim-bookworm"
SUITE = "bookworm"
CA_LABEL = "org.gmf.ca-sha256"


def rootfs_tag(base_tag: str) -> str:
    return f"{base_tag}-rootfs" if ":" in base_tag.rsplit("/", 1)[-1] else f"{base_tag}:rootfs"


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def get_image(client: Client, tag: str) -> Any | None:
    from docker.errors import ImageNotFound

    try:
        return client.images.get(tag)
    except ImageNotFound:
        return None


def try_pull(client: Client, ref: str) -> bool:
    """Pull ``ref`` showing progress; False (with a notice) when no registry answers."""
    from docker.errors import APIError

    repo, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "latest")
    note(f"pulling {ref} ...")
    try:
        seen: dict[str, str] = {}
        for event in client.api.pull(repo, tag=tag, stream=True, decode=True):
            if "error" in event:
                raise APIError(event["error"])
            status, layer = event.get("status", ""), event.get("id", "")
            if status and seen.get(layer) != status and status not in ("Downloading", "Extracting"):
                seen[layer] = status
                print(f"  {layer + ': ' if layer else ''}{status}", file=sys.stderr, flush=True)
    except (APIError, OSError) as exc:
        note(f"cannot pull {ref}: {engine.api_error(exc, 'pull')}")
        return False
    return True


def stream_build(chunks: Iterable[dict[str, Any]]) -> str | None:
    """Print a build's log as it comes; returns the image id; raises on a build error."""
    image_id: str | None = None
    for chunk in chunks:
        if "stream" in chunk:
            sys.stdout.write(chunk["stream"])
            sys.stdout.flush()
        elif "status" in chunk:
            print(chunk["status"], chunk.get("progress", ""), flush=True)
        if "aux" in chunk and isinstance(chunk["aux"], dict):
            image_id = chunk["aux"].get("ID", image_id)
        if "error" in chunk:
            detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
            raise ToolkitError(f"docker build failed: {detail.strip()}")
    return image_id


# --------------------------------------------------------------------------- base image


def debootstrap_rootfs(client: Client, tag: str, mirror: str | None) -> None:
    """debootstrap a minimal bookworm from the host's apt mirror and ``docker import`` it."""
    if shutil.which("debootstrap") is None:
        raise ToolkitError(
            "no registry answers and debootstrap is missing: install it (`apt-get install debootstrap`), "
            f"or load a base image with `docker load` and tag it {BASE_TAG}"
        )
    if os.geteuid() != 0:
        raise ToolkitError("debootstrap needs root: run `sudo invoke base-image` (or pull access to a registry)")
    sources = aptsources.host_sources()
    mirror = mirror or aptsources.debian_mirror(sources)
    if not mirror:
        raise ToolkitError(
            "no Debian mirror in /etc/apt/sources.list{,.d/*}: pass one with `invoke base-image --mirror URL`"
        )
    security = aptsources.debian_security_mirror(sources)
    workdir = Path(tempfile.mkdtemp(prefix="gmf-rootfs-", dir="/var/tmp"))
    rootfs = workdir / "rootfs"
    try:
        note(f"debootstrap --variant=minbase {SUITE} from {mirror} (about a minute) ...")
        started = time.monotonic()
        proc = subprocess.Popen(
            ["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        fetched = 0
        for line in proc.stdout:
            if line.startswith(("I: Retrieving", "I: Extracting", "I: Unpacking", "I: Configuring")):
                fetched += 1
                if fetched % 40:
                    continue
                line = f"I: ... {fetched} steps ({line[3:].strip()})"
            print("  " + line.rstrip(), file=sys.stderr, flush=True)
        if proc.wait() != 0:
            raise ToolkitError(
                f"debootstrap failed (exit {proc.returncode}); see the log above "
                f"(is {mirror} reachable? pass another with --mirror)"
            )
        _tidy_rootfs(rootfs, mirror, security)
        note(f"debootstrap done in {time.monotonic() - started:.0f}s; importing as {tag} ...")
        tar_path = workdir / "rootfs.tar"
        subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tar_path), "."], check=True)
        repo, _, tagname = tag.rpartition(":")
        client.api.import_image_from_file(
            str(tar_path), repository=repo, tag=tagname,
            changes=['CMD ["bash"]', "ENV LANG=C.UTF-8", f"LABEL org.gmf.rootfs=debootstrap-{SUITE}"],
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _tidy_rootfs(rootfs: Path, mirror: str, security: str | None) -> None:
    lines = [f"deb {mirror} {SUITE} main", f"deb {mirror} {SUITE}-updates main"]
    if security:
        lines.append(f"deb {security} {SUITE}-security main")
    (rootfs / "etc/apt/sources.list").write_text("\n".join(lines) + "\n")
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for item in (rootfs / sub).glob("*"):
            if item.is_file():
                item.unlink()
    (rootfs / "etc/apt/apt.conf.d/docker-clean").write_text(
        'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb || true"; };\n'
        'Acquire::Languages "none";\n'
    )


def _ca_layer_context(rootfs: str, ca: Path | None, fp: str) -> io.BytesIO:
    dockerfile = (
        f"FROM {rootfs}\n"
        f"COPY ca-extra.crt {proxy.IMAGE_EXTRA_CA}\n"
        f'LABEL {CA_LABEL}="{fp}"\n'
    )
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("Dockerfile", dockerfile.encode()), ("ca-extra.crt", ca.read_bytes() if ca else b"")):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def ensure_base(tag: str = BASE_TAG, ca_bundle: str | None = None, force: bool = False,
                mirror: str | None = None) -> None:
    """Make ``tag`` exist and carry the current CA bundle (the cheap layer is rebuilt when it changed)."""
    client = engine.client()
    ca = proxy.ca_bundle(ca_bundle)
    fp = proxy.fingerprint(ca)
    current = get_image(client, tag)
    if current is not None and not force and (current.labels or {}).get(CA_LABEL) == fp:
        note(f"base image {tag} is up to date (CA bundle: {ca or 'none'})")
        return
    rootfs = rootfs_tag(tag)
    if force or get_image(client, rootfs) is None:
        if try_pull(client, OFFICIAL_BASE):
            client.images.get(OFFICIAL_BASE).tag(*rootfs.rsplit(":", 1))
        else:
            debootstrap_rootfs(client, rootfs, mirror)
    note(f"adding the CA bundle ({ca or 'none'}) -> {tag}")
    stream_build(client.api.build(
        fileobj=_ca_layer_context(rootfs, ca, fp), custom_context=True, tag=tag, rm=True, decode=True,
    ))
    size = client.images.get(tag).attrs.get("Size", 0)
    print(f"Base image {tag} is ready ({human_size(size)})", flush=True)


# --------------------------------------------------------------------------- dev image


def build_dev(tag: str = DEV_TAG, base: str = BASE_TAG, ca_bundle: str | None = None,
              no_cache: bool = False) -> None:
    """Build docker/Dockerfile FROM ``base`` (made first when it is the toolkit's local tag)."""
    client = engine.client()
    if base == BASE_TAG:
        ensure_base(base, ca_bundle)
    elif get_image(client, base) is None and not try_pull(client, base):
        raise ToolkitError(
            f"base image {base} is missing and cannot be pulled (no registry answers): "
            f"run `invoke base-image` and build with the default --base {BASE_TAG}, "
            f"or `docker load` the image first"
        )
    note(f"building {tag} from {DOCKERFILE} (base {base}) ...")
    started = time.monotonic()
    buildargs = {"BASE": base, **proxy.proxy_env()}
    try:
        stream_build(client.api.build(
            path=str(checkout.root()), dockerfile=DOCKERFILE, tag=tag, buildargs=buildargs, decode=True,
            rm=True, forcerm=True, nocache=no_cache, pull=False,
        ))
    except OSError as exc:
        raise engine.api_error(exc, f"building {tag}") from None
    size = client.images.get(tag).attrs.get("Size", 0)
    print(f"Docker image {tag} has been built ({human_size(size)}, {time.monotonic() - started:.0f}s)", flush=True)


def ensure_dev(tag: str = DEV_TAG) -> None:
    """Build the dev image on first use."""
    if get_image(engine.client(), tag) is None:
        note(f"image {tag} not found: building it first")
        build_dev(tag)


