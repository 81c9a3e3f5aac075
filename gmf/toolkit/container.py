"""The named dev container: up / status / shell / logs / down, and exec with pass-through.

Like the seed's cargo-docker.sh (create-or-start, workspace mounted, port published, exec),
over the docker SDK: the workspace at /usr/src/app, pip's cache in a named volume, port
50051 published, a seccomp setting under which io_uring works (see seccomp.py), memlock
raised only where the kernel needs it.
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import checkout, engine, proxy, seccomp
from . import image as images
from .engine import Client
from .errors import ToolkitError, note

WORKDIR = "/usr/src/app"
PIP_CACHE_VOLUME = "gmf-pip-cache"
DEFAULT_NAME = "gmf-dev"
DEFAULT_PORT = 50051
LABEL = "org.gmf.role"
# Docker turns IPv6 off in containers on its default (IPv4-only) network; turning it back on
# gives the container ::1, which the dual-stack tests and `[::]:PORT` servers need.
IPV6_SYSCTLS = {"net.ipv6.conf.all.disable_ipv6": "0"} if Path("/proc/sys/net/ipv6").is_dir() else {}


@dataclass
class Settings:
    """How a toolkit container is made; defaults overridable by GMF_DEV_CONTAINER / GMF_DEV_PORT."""

    name: str = field(default_factory=lambda: os.environ.get("GMF_DEV_CONTAINER", DEFAULT_NAME))
    image: str = images.DEV_TAG
    port: int = field(default_factory=lambda: int(os.environ.get("GMF_DEV_PORT", DEFAULT_PORT)))
    workspace: Path = field(default_factory=checkout.root)
    seccomp: str = "auto"
    memlock: int | None = None  # bytes; None = only when the kernel needs it


def _kernel_tuple(release: str) -> tuple[int, int]:
    parts = (release.split("-")[0].split(".") + ["0", "0"])[:2]
    try:
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)
    except ValueError:
        return (0, 0)


def memlock_limit(kernel_release: str, hard_limit: int, requested: int | None) -> int | None:
    """RLIMIT_MEMLOCK for the container, or None to leave the engine's default.

    Since Linux 5.12 io_uring memory is charged to the cgroup, not RLIMIT_MEMLOCK: raise it
    only on older kernels or on request, and never above the host's hard limit (an
    unlimited request fails with "error setting rlimit type 8: operation not permitted").
    """
    unlimited = resource.RLIM_INFINITY
    if requested is None and _kernel_tuple(kernel_release) >= (5, 12):
        return None
    want = hard_limit if requested is None or requested < 0 else requested
    if hard_limit != unlimited and (want == unlimited or want > hard_limit):
        note(f"memlock capped at the host's hard limit ({hard_limit} bytes)")
        want = hard_limit
    return want


def run_kwargs(client: Client, s: Settings) -> dict[str, Any]:
    """create() arguments shared by the dev container and `invoke run` containers."""
    from docker.types import Ulimit

    kernel = str(client.info().get("KernelVersion", platform.release()))
    hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]
    memlock = memlock_limit(kernel, hard, s.memlock)
    env = {**proxy.proxy_env(), "PYTHONDONTWRITEBYTECODE": "1"}
    return {
        "image": s.image,
        "working_dir": WORKDIR,
        "volumes": {
            str(s.workspace): {"bind": WORKDIR, "mode": "rw"},
            PIP_CACHE_VOLUME: {"bind": "/root/.cache/pip", "mode": "rw"},
        },
        "environment": env,
        "security_opt": seccomp.security_opts(s.image, s.seccomp) or None,
        "ulimits": [Ulimit(name="memlock", soft=memlock, hard=memlock)] if memlock is not None else None,
        "init": True,
        "detach": True,
    }


def find(client: Client, name: str) -> Any | None:
    from docker.errors import NotFound

    try:
        return client.containers.get(name)
    except NotFound:
        return None


def up(s: Settings) -> Any:
    """Create or start the dev container (building the image on first use); harmless twice."""
    from docker.errors import APIError

    client = engine.client()
    images.ensure_dev(s.image)
    box = find(client, s.name)
    if box is not None and box.status == "running":
        note(f"container {s.name} is already running")
        _warn_if_stale(client, box, s.image)
        return box
    created = box is None
    if created:
        kwargs = run_kwargs(client, s)
        kwargs["ports"] = {f"{DEFAULT_PORT}/tcp": s.port}
        kwargs["sysctls"] = IPV6_SYSCTLS or None
        kwargs["labels"] = {LABEL: "dev", "org.gmf.workspace": str(s.workspace)}
        try:
            box = client.containers.create(command=["sleep", "infinity"], name=s.name, **kwargs)
        except APIError as exc:
            raise engine.api_error(exc, f"creating container {s.name}") from None
    assert box is not None
    try:
        box.start()
    except APIError as exc:
        if created:
            box.remove(force=True)
        hint = " (the port is taken: pass another with --port)" if "port" in str(exc).lower() else ""
        raise ToolkitError(f"{engine.api_error(exc, f'starting container {s.name}')}{hint}") from None
    box.reload()
    note(f"container {s.name} is {'created and ' if created else ''}running: {s.workspace} -> {WORKDIR}, "
         f"port {s.port} -> {DEFAULT_PORT}, image {s.image}")
    return box


def _warn_if_stale(client: Client, box: Any, tag: str) -> None:
    current = images.get_image(client, tag)
    if current is not None and box.image.id != current.id:
        note(f"container {box.name} runs an older {tag}: `invoke container.down` then `invoke container.up` "
             "to recreate it from the new image")


def status(name: str) -> int:
    client = engine.client()
    box = find(client, name)
    if box is None:
        print(f"{name}: not created (run `invoke container.up`)")
        return 0
    ports = box.attrs.get("NetworkSettings", {}).get("Ports") or {}
    published = ", ".join(
        f"{b['HostIp'] or '0.0.0.0'}:{b['HostPort']}->{p}" for p, binds in ports.items() for b in (binds or [])
    )
    opts = box.attrs.get("HostConfig", {}).get("SecurityOpt") or []
    sec = "default" if not opts else ("unconfined" if "seccomp=unconfined" in opts else "gmf profile")
    print(f"{name}: {box.status}")
    print(f"  image:     {', '.join(box.image.tags) or box.image.short_id}")
    print(f"  workspace: {box.labels.get('org.gmf.workspace', '?')} -> {WORKDIR}")
    print(f"  ports:     {published or 'none'}")
    print(f"  seccomp:   {sec}")
    return 0


def down(name: str) -> int:
    client = engine.client()
    box = find(client, name)
    if box is None:
        note(f"container {name} does not exist")
        return 0
    box.remove(force=True)
    note(f"container {name} removed (the pip cache volume {PIP_CACHE_VOLUME} is kept)")
    return 0


def logs(name: str, follow: bool = False, tail: int = 100) -> int:
    box = find(engine.client(), name)
    if box is None:
        raise ToolkitError(f"container {name} does not exist: run `invoke container.up`")
    try:
        for chunk in box.logs(stream=True, follow=follow, tail=tail):
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    return 0


def exec_in(s: Settings, cmd: list[str], env: dict[str, str] | None = None) -> int:
    """Run ``cmd`` in the dev container (started as needed); output and exit code pass through."""
    client = engine.client()
    box = up(s)
    note(f"in {s.name}: {' '.join(cmd)}")
    exec_id = client.api.exec_create(box.id, cmd, environment=env, workdir=WORKDIR)["Id"]
    for out, err in client.api.exec_start(exec_id, stream=True, demux=True):
        if out:
            sys.stdout.buffer.write(out)
            sys.stdout.flush()
        if err:
            sys.stderr.buffer.write(err)
            sys.stderr.flush()
    code = client.api.exec_inspect(exec_id).get("ExitCode")
    return int(code) if code is not None else 1


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt meanwhile, so what Ctrl-C cleans up SIGTERM cleans up too."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_throwaway(s: Settings, cmd: list[str], env: dict[str, str] | None = None,
                  on_line: Callable[[str], None] | None = None) -> int:
    """Run ``cmd`` in a new container ``s.name`` of ``s.image`` (dev container settings, no
    port published) and remove it after; output streams through (each stdout line also goes to
    ``on_line``) and its exit code is returned: 130 when Ctrl-C or SIGTERM stopped it."""
    from docker.errors import APIError

    client = engine.client()
    kwargs = run_kwargs(client, s)
    kwargs["environment"] = {**kwargs["environment"], **(env or {})}
    kwargs["sysctls"] = IPV6_SYSCTLS or None
    try:
        box = client.containers.create(command=cmd, name=s.name, labels={LABEL: "test"}, **kwargs)
    except APIError as exc:
        raise engine.api_error(exc, f"creating container {s.name}") from None
    note(f"in {s.name} ({s.image}): {' '.join(cmd)}")
    pending = ""
    with sigterm_as_interrupt():
        try:
            box.start()
            for out, err in box.attach(stdout=True, stderr=True, stream=True, logs=True, demux=True):
                if out:
                    sys.stdout.buffer.write(out)
                    sys.stdout.flush()
                    if on_line is not None:
                        *lines, pending = (pending + out.decode(errors="replace")).split("\n")
                        for line in lines:
                            on_line(line)
                if err:
                    sys.stderr.buffer.write(err)
                    sys.stderr.flush()
            code = int(box.wait().get("StatusCode", 1))
        except KeyboardInterrupt:
            note(f"stopping {s.name}")
            box.stop(timeout=10)
            code = 130
        finally:
            box.remove(force=True)
    if pending and on_line is not None:
        on_line(pending)
    return code


def shell(s: Settings) -> int:
    """An interactive bash in the dev container (the docker CLI handles the terminal)."""
    up(s)
    docker_cli = shutil.which("docker")
    if docker_cli is None:
        raise ToolkitError("an interactive shell needs the docker CLI: install it, or use `invoke test`/`run`")
    flags = ["-it"] if sys.stdin.isatty() else ["-i"]
    return subprocess.call([docker_cli, "exec", *flags, "-w", WORKDIR, s.name, "bash"])
