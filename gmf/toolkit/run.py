"""`invoke run`: an example's server (or client), in a container or natively.

Container runs use their own container, ``gmf-run-<example>-<port>``, from the dev image with
the same mounts and io_uring settings as the dev container, publishing PORT on the host;
``--detach`` leaves it running (wait until it accepts connections), ``--stop`` removes it.
SIGTERM to ``invoke run`` stops what it started, as Ctrl-C does: the native server (which
drains) or the container.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from . import checkout, container, engine, image
from .errors import ToolkitError, note

READY_PROBE = (
    "import socket,sys,time\n"
    "end=time.time()+float(sys.argv[2])\n"
    "while True:\n"
    "    try: socket.create_connection(('127.0.0.1',int(sys.argv[1])),1).close(); break\n"
    "    except OSError:\n"
    "        if time.time()>end: sys.exit(1)\n"
    "        time.sleep(0.2)\n"
)


STOP_TIMEOUT = 30.0  # seconds a native server gets to drain after the signal, then it is killed


def examples() -> list[str]:
    """The examples ``invoke run`` can start: folders of examples/ with a server.py."""
    folder = checkout.root() / "examples"
    return sorted(p.name for p in folder.iterdir()
                  if p.is_dir() and not p.name.startswith(("_", ".")) and (p / "server.py").is_file())


def script(example: str, role: str) -> str:
    """``examples/<example>/<role>.py`` relative to the workspace; ToolkitError lists the examples."""
    known = examples()
    if example not in known:
        raise ToolkitError(f"unknown example {example!r}; the examples are: {', '.join(known)}")
    path = Path("examples") / example / f"{role}.py"
    if not (checkout.root() / path).is_file():
        raise ToolkitError(f"examples/{example} has no {role}.py")
    return str(path)


def run(example: str, *, mode: str = "auto", port: int = container.DEFAULT_PORT, client: bool = False,
        detach: bool = False, stop: bool = False, timeout: float = 60.0) -> int:
    role = "client" if client else "server"
    path = script(example, role)
    if mode == "auto":
        if engine.available():
            mode = "container"
        else:
            note(f"no Docker engine at {engine.engine_address()}: running natively")
            mode = "native"
    if mode == "native":
        if detach or stop:
            raise ToolkitError("--detach/--stop apply to container runs: add --container")
        return _native(path, role, port)
    if stop:
        return _stop(_name(example, port))
    image.ensure_dev(image.DEV_TAG)
    if client:
        return _container_client(path, port)
    return _container_server(example, path, port, detach, timeout)


def _args(role: str, port: int) -> list[str]:
    return ["--target", f"127.0.0.1:{port}"] if role == "client" else ["--port", str(port)]


def _native(path: str, role: str, port: int) -> int:
    with container.sigterm_as_interrupt():
        proc = subprocess.Popen([sys.executable, path, *_args(role, port)], cwd=checkout.root())
        try:
            return proc.wait()
        except KeyboardInterrupt:  # Ctrl-C reached the child too; a SIGTERM only us: pass it on
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            return 130


def _name(example: str, port: int) -> str:
    return f"gmf-run-{example}-{port}"


def _stop(name: str) -> int:
    box = container.find(engine.client(), name)
    if box is None:
        note(f"{name} is not running")
        return 0
    box.stop(timeout=10)
    box.remove(force=True)
    note(f"stopped {name}")
    return 0


def _stream(box: Any) -> None:
    for chunk in box.logs(stream=True, follow=True):
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()


def _container_server(example: str, path: str, port: int, detach: bool, timeout: float) -> int:
    from docker.errors import APIError

    client = engine.client()
    name = _name(example, port)
    old = container.find(client, name)
    if old is not None:
        if old.status == "running":
            raise ToolkitError(f"{name} is already running: stop it with `invoke run --example {example} "
                               f"--port {port} --stop`")
        old.remove(force=True)
    settings = container.Settings(name=name, port=port)
    kwargs = container.run_kwargs(client, settings)
    with container.sigterm_as_interrupt():  # from here on a SIGTERM stops and removes the container
        box = client.containers.create(
            command=["python", path, *_args("server", port)], name=name, ports={f"{port}/tcp": port},
            labels={container.LABEL: "run"}, **kwargs,
        )
        try:
            try:
                box.start()
            except APIError as exc:
                box.remove(force=True)
                raise ToolkitError(f"{engine.api_error(exc, f'starting {name}')} (port {port} taken? use --port)") from None
            note(f"{example} server in container {name}, published on port {port}")
            if detach:
                return _wait_ready(client, box, port, timeout, example)
            _stream(box)
            code = int(box.wait().get("StatusCode", 1))
        except KeyboardInterrupt:
            note(f"stopping {name}")
            box.stop(timeout=10)
            code = 130
        box.remove(force=True)
        return code


def _wait_ready(client: Any, box: Any, port: int, timeout: float, example: str) -> int:
    from docker.errors import APIError

    try:
        exec_id = client.api.exec_create(box.id, ["python", "-c", READY_PROBE, str(port), str(timeout)])["Id"]
        client.api.exec_start(exec_id)
        ready = client.api.exec_inspect(exec_id).get("ExitCode") == 0
    except APIError:  # the server exited before it listened
        ready = False
    if ready:
        note(f"ready: 127.0.0.1:{port}; stop it with `invoke run --example {example} --port {port} --stop`")
        return 0
    box.reload()
    sys.stderr.write(box.logs(tail=50).decode(errors="replace"))
    box.remove(force=True)
    raise ToolkitError(f"the {example} server did not accept connections on port {port} within {timeout:.0f}s "
                       f"(container {box.status}; its log is above)")


def _container_client(path: str, port: int) -> int:
    """The client in a throwaway container on the host's network: it goes through the published port."""
    client = engine.client()
    kwargs = container.run_kwargs(client, container.Settings())
    with container.sigterm_as_interrupt():
        box = client.containers.create(command=["python", path, *_args("client", port)], network_mode="host",
                                       labels={container.LABEL: "run"}, **kwargs)
        try:
            box.start()
            _stream(box)
            return int(box.wait().get("StatusCode", 1))
        except KeyboardInterrupt:
            return 130
        finally:
            box.remove(force=True)
