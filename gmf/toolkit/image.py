"""The two images per tested Python: the local base (``invoke base-image``) and the dev image
(``invoke build-image``); ``--python V`` picks the Debian release that ships V (pythons.py).

The base is one local tag per release, ``gmf-base:<suite>`` (bookworm, trixie, forky), made
in two layers:

1. the release's root file system, tagged ``gmf-base:<suite>-rootfs``: the official
   ``debian:<suite>-slim`` re-tagged when a registry answers, else
   ``debootstrap --variant=minbase <suite>`` from the host's own apt mirror (checked first:
   the suite's Release file must be there) + ``docker import``;
2. on top of it, the CA bundle to trust (proxies that intercept TLS), labelled with its
   sha256 so a changed bundle only rebuilds this small layer.

docker/Dockerfile builds FROM that tag with ``PYTHON=<version>``, as ``gmf-dev:<suite>``; the
devcontainer (.devcontainer) builds FROM gmf-base:bookworm, so an engine that cannot pull
anything works after ``invoke base-image``.
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

from . import aptsources, checkout, engine, proxy, pythons
from .engine import Client
from .errors import ToolkitError, note
from .pythons import Target

DOCKERFILE = "docker/Dockerfile"
DEV_TAG = pythons.DEFAULT.dev_tag
BASE_TAG = pythons.DEFAULT.base_tag
CA_LABEL = "org.gmf.ca-sha256"
DEBOOTSTRAP_SCRIPTS = Path("/usr/share/debootstrap/scripts")


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


def stream_build(chunks: Iterable[dict[str, Any]], compact: bool = False) -> str | None:
    """Print a build's log as it comes; returns the image id; raises on a build error.

    ``compact``: leave out the steps the layer cache answered (a rebuild with nothing changed
    prints one line), keep every step that runs and all of its output."""
    image_id: str | None = None
    step: str | None = None  # compact: a step's header, printed once the step does real work
    cached = 0
    for chunk in chunks:
        if "stream" in chunk:
            text = chunk["stream"]
            if compact:
                if text.startswith("Step "):
                    step = text
                    continue
                if "Using cache" in text:
                    cached, step = cached + 1, None
                    continue
                if text.startswith((" ---> ", "Removing intermediate container", "Successfully")) or not text.strip():
                    continue
                if step is not None:
                    sys.stdout.write(step.rstrip("\n") + "\n")
                    step = None
            sys.stdout.write(text)
            sys.stdout.flush()
        elif "status" in chunk:
            print(chunk["status"], chunk.get("progress", ""), flush=True)
        if "aux" in chunk and isinstance(chunk["aux"], dict):
            image_id = chunk["aux"].get("ID", image_id)
        if "error" in chunk:
            if step is not None:
                sys.stdout.write(step.rstrip("\n") + "\n")
            detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
            raise ToolkitError(f"docker build failed: {detail.strip()}")
    if compact and cached:
        print(f"({cached} steps from the layer cache)", flush=True)
    return image_id


# --------------------------------------------------------------------------- base image


def debootstrap_rootfs(client: Client, tag: str, target: Target, mirror: str | None) -> None:
    """debootstrap a minimal ``target.suite`` from the host's apt mirror and ``docker import`` it."""
    suite = target.suite
    if shutil.which("debootstrap") is None:
        raise ToolkitError(
            "no registry answers and debootstrap is missing: install it (`apt-get install debootstrap`), "
            f"or load a base image with `docker load` and tag it {rootfs_tag(tag)}"
        )
    if os.geteuid() != 0:
        raise ToolkitError(f"debootstrap needs root: run `sudo invoke base-image --python {target.python}` "
                           "(or pull access to a registry)")
    sources = aptsources.host_sources()
    mirror = mirror or aptsources.debian_mirror(sources)
    if not mirror:
        raise ToolkitError(
            "no Debian mirror in /etc/apt/sources.list{,.d/*}: pass one with `invoke base-image --mirror URL`"
        )
    apt_lines = suite_sources(suite, mirror, aptsources.debian_security_mirror(sources))
    workdir = Path(tempfile.mkdtemp(prefix="gmf-rootfs-", dir="/var/tmp"))
    rootfs = workdir / "rootfs"
    try:
        note(f"debootstrap --variant=minbase {suite} from {mirror} (about a minute) ...")
        started = time.monotonic()
        proc = subprocess.Popen(
            ["debootstrap", "--variant=minbase", suite, str(rootfs), mirror, *debootstrap_script(suite)],
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
        _tidy_rootfs(rootfs, apt_lines)
        note(f"debootstrap done in {time.monotonic() - started:.0f}s; importing as {tag} ...")
        tar_path = workdir / "rootfs.tar"
        subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tar_path), "."], check=True)
        repo, _, tagname = tag.rpartition(":")
        client.api.import_image_from_file(
            str(tar_path), repository=repo, tag=tagname,
            changes=['CMD ["bash"]', "ENV LANG=C.UTF-8", f"LABEL org.gmf.rootfs=debootstrap-{suite}"],
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def suite_sources(suite: str, mirror: str, security: str | None) -> list[str]:
    """The image's apt sources: ``suite`` (which the mirror must carry), then ``-updates`` and
    ``-security`` where their Release files exist. A suite whose Release file has expired (a
    mirror that stopped syncing testing) gets ``check-valid-until=no``, said in a notice."""
    release = aptsources.fetch_release(mirror, suite)
    if release is None:
        raise ToolkitError(
            f"the Debian mirror {mirror} has no {suite} (no dists/{suite}/Release): pass a mirror that "
            f"carries it with --mirror, or pick another --python ({', '.join(pythons.versions())})"
        )
    lines: list[str] = []
    for uri, name in ((mirror, suite), (mirror, f"{suite}-updates"), (security, f"{suite}-security")):
        found = release if name == suite else _optional_release(uri, name)
        if found is None:
            continue
        options = ""
        if found.expired():
            assert found.valid_until is not None
            note(f"{uri} serves {name} with a Release file that expired on {found.valid_until:%Y-%m-%d}: "
                 "apt in the image will not check its date (check-valid-until=no)")
            options = "[check-valid-until=no] "
        lines.append(f"deb {options}{uri} {name} main")
    return lines


def _optional_release(uri: str | None, suite: str) -> aptsources.Release | None:
    if uri is None:
        return None
    try:
        return aptsources.fetch_release(uri, suite)
    except ToolkitError as exc:
        note(f"leaving {suite} out of the image's apt sources: {exc}")
        return None


def debootstrap_script(suite: str) -> list[str]:
    """The script argument for a suite the host's debootstrap predates (every Debian release
    since buster uses the same script as sid)."""
    if (DEBOOTSTRAP_SCRIPTS / suite).exists() or not (DEBOOTSTRAP_SCRIPTS / "sid").exists():
        return []
    note(f"this debootstrap has no script for {suite}: using sid's (the one every current release uses)")
    return [str(DEBOOTSTRAP_SCRIPTS / "sid")]


def _tidy_rootfs(rootfs: Path, apt_lines: list[str]) -> None:
    (rootfs / "etc/apt/sources.list").write_text("\n".join(apt_lines) + "\n")
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


def ensure_base(target: Target = pythons.DEFAULT, ca_bundle: str | None = None, force: bool = False,
                mirror: str | None = None, tag: str | None = None) -> str:
    """Make the base image of ``target`` exist and carry the current CA bundle (the cheap layer
    is rebuilt when it changed); returns its tag."""
    tag = tag or target.base_tag
    client = engine.client()
    ca = proxy.ca_bundle(ca_bundle)
    fp = proxy.fingerprint(ca)
    current = get_image(client, tag)
    if current is not None and not force and (current.labels or {}).get(CA_LABEL) == fp:
        note(f"base image {tag} is up to date (CA bundle: {ca or 'none'})")
        return tag
    rootfs = rootfs_tag(tag)
    if force or get_image(client, rootfs) is None:
        if try_pull(client, target.official):
            client.images.get(target.official).tag(*rootfs.rsplit(":", 1))
        else:
            debootstrap_rootfs(client, rootfs, target, mirror)
    note(f"adding the CA bundle ({ca or 'none'}) -> {tag}")
    stream_build(client.api.build(
        fileobj=_ca_layer_context(rootfs, ca, fp), custom_context=True, tag=tag, rm=True, decode=True,
    ))
    size = client.images.get(tag).attrs.get("Size", 0)
    print(f"Base image {tag} is ready ({human_size(size)})", flush=True)
    return tag


# --------------------------------------------------------------------------- dev image


def build_dev(target: Target = pythons.DEFAULT, tag: str | None = None, base: str | None = None,
              ca_bundle: str | None = None, no_cache: bool = False, compact: bool = False) -> str:
    """Build docker/Dockerfile for ``target``'s Python FROM ``base`` (default: the target's local
    base, made first); returns the tag. ``compact``: see stream_build."""
    tag, base = tag or target.dev_tag, base or target.base_tag
    client = engine.client()
    local = pythons.for_base_tag(base)
    if local is not None:
        ensure_base(local, ca_bundle)
    elif get_image(client, base) is None and not try_pull(client, base):
        raise ToolkitError(
            f"base image {base} is missing and cannot be pulled (no registry answers): "
            f"run `invoke base-image` and build with the default --base {target.base_tag}, "
            f"or `docker load` the image first"
        )
    note(f"building {tag} from {DOCKERFILE} (base {base}, Python {target.python}) ...")
    started = time.monotonic()
    buildargs = {"BASE": base, "PYTHON": target.python, **proxy.proxy_env()}
    try:
        stream_build(client.api.build(
            path=str(checkout.root()), dockerfile=DOCKERFILE, tag=tag, buildargs=buildargs, decode=True,
            rm=True, forcerm=True, nocache=no_cache, pull=False,
        ), compact=compact)
    except OSError as exc:
        raise engine.api_error(exc, f"building {tag}") from None
    size = client.images.get(tag).attrs.get("Size", 0)
    print(f"Docker image {tag} has been built ({human_size(size)}, {time.monotonic() - started:.0f}s)", flush=True)
    return tag


def ensure_dev(tag: str = DEV_TAG) -> None:
    """Build the dev image on first use."""
    if get_image(engine.client(), tag) is None:
        note(f"image {tag} not found: building it first")
        target = next((t for t in pythons.TARGETS if t.dev_tag == tag), pythons.DEFAULT)
        build_dev(target, tag=tag)
