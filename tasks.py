"""Invoke tasks for GMF's container-first development workflow (`invoke --list`).

Wiring only: each task calls into gmf/toolkit/ (the container toolkit) or into the dev harness
of this checkout: bench/ (`invoke bench`), soak/ (`invoke soak`), tests/fuzzing/ (`invoke fuzz`),
imported only when their task runs. See docs/development.md.
"""

from __future__ import annotations

from invoke import Collection, Context, task
from invoke.exceptions import Exit

from gmf.toolkit import commands, image, matrix, nix, pythons
from gmf.toolkit import container as box
from gmf.toolkit import devcontainer as devcontainer_cfg
from gmf.toolkit import run as run_mod
from gmf.toolkit.container import Settings


def _done(code: int) -> None:
    if code:
        raise Exit(code=code)


def _settings(name: str | None = None, port: int | None = None, seccomp: str = "auto",
              memlock: int | None = None) -> Settings:
    # Invoke passes options without a typed default as strings: coerce here.
    s = Settings(seccomp=seccomp, memlock=int(memlock) if memlock is not None else None)
    s.name, s.port = name or s.name, int(port) if port else s.port
    return s


_PYTHON_HELP = f"Python version ({', '.join(pythons.versions())}): its Debian release's image"


@task(help={"python": _PYTHON_HELP, "tag": "image tag (default gmf-base:<suite>)",
            "mirror": "Debian mirror URL (default: the host's apt sources)",
            "ca_bundle": "CA bundle to bake in (default: SSL_CERT_FILE/PIP_CERT or the system bundle)",
            "force": "rebuild the root file system too"})
def base_image(c: Context, python: str = pythons.DEFAULT.python, tag: str | None = None, mirror: str | None = None,
               ca_bundle: str | None = None, force: bool = False) -> None:
    """Make the local base gmf-base:<suite> (pull debian:<suite>-slim, else debootstrap)."""
    (target,) = pythons.select(python)
    image.ensure_base(target, ca_bundle=ca_bundle, force=force, mirror=mirror, tag=tag)


@task(help={"python": _PYTHON_HELP, "tag": "image tag (default gmf-dev:<suite>)",
            "base": "base image (default: the local gmf-base:<suite>, made if missing)",
            "ca_bundle": "CA bundle for pip behind a TLS-intercepting proxy", "no_cache": "build without cache"})
def build_image(c: Context, python: str = pythons.DEFAULT.python, tag: str | None = None, base: str | None = None,
                ca_bundle: str | None = None, no_cache: bool = False) -> None:
    """Build the dev image from docker/Dockerfile (Debian's Python, protoc, gcc, the deps)."""
    (target,) = pythons.select(python)
    image.build_dev(target, tag=tag, base=base, ca_bundle=ca_bundle, no_cache=no_cache)


_CONTAINER_HELP = {"name": "container name (default gmf-dev, env GMF_DEV_CONTAINER)",
                   "port": "host port published to 50051 (default 50051, env GMF_DEV_PORT)",
                   "seccomp": "auto|default|gmf|unconfined (auto: probe io_uring)",
                   "memlock": "RLIMIT_MEMLOCK bytes (default: raised only on kernels < 5.12)"}


@task(help=_CONTAINER_HELP)
def up(c: Context, name: str | None = None, port: int | None = None, seccomp: str = "auto",
       memlock: int | None = None) -> None:
    """Create or start the dev container (workspace at /usr/src/app, port 50051)."""
    box.up(_settings(name, port, seccomp, memlock))


@task(help={"name": _CONTAINER_HELP["name"]})
def status(c: Context, name: str | None = None) -> None:
    """Show the dev container's state, image, ports and seccomp setting."""
    _done(box.status(_settings(name).name))


@task(help={"name": _CONTAINER_HELP["name"]})
def shell(c: Context, name: str | None = None) -> None:
    """Open an interactive bash in the dev container (started as needed)."""
    _done(box.shell(_settings(name)))


@task(help={"name": _CONTAINER_HELP["name"], "follow": "keep following", "tail": "lines to show"})
def logs(c: Context, name: str | None = None, follow: bool = False, tail: int = 100) -> None:
    """Show the dev container's logs."""
    _done(box.logs(_settings(name).name, follow=follow, tail=tail))


@task(help={"name": _CONTAINER_HELP["name"]})
def down(c: Context, name: str | None = None) -> None:
    """Remove the dev container (the pip cache volume stays)."""
    _done(box.down(_settings(name).name))


@task(help={"example": "example name (a folder of examples/)", "container": "run in a container",
            "native": "run on this machine", "port": "port (published on the host in a container)",
            "client": "run the example's client instead of its server",
            "detach": "container: leave the server running once it accepts connections",
            "stop": "container: stop a detached server"})
def run(c: Context, example: str = "helloworld", container: bool = False, native: bool = False,
        port: int = box.DEFAULT_PORT, client: bool = False, detach: bool = False, stop: bool = False) -> None:
    """Run an example server (or --client); in a container when Docker answers, else natively."""
    mode = "container" if container else "native" if native else "auto"
    _done(run_mod.run(example, mode=mode, port=port, client=client, detach=detach, stop=stop))


@task(help={"container": "run inside the dev container", "k": "pytest -k expression",
            "path": "test paths (repeatable)", "name": _CONTAINER_HELP["name"],
            "python": f"run in the image of this Python ({', '.join(pythons.versions())}, comma-separated, or all)",
            "jobs": "--python: versions run side by side (each one's output comes when it ends)"},
      iterable=["path"])
def test(c: Context, container: bool = False, k: str | None = None, path: list[str] | None = None,
         name: str | None = None, python: str | None = None, jobs: int = 1) -> None:
    """Run the tests (pytest), natively, in the dev container or per Python; `-- ARGS` go to pytest."""
    extra = commands.passthrough(c.remainder)
    if python:
        _done(matrix.run(python, commands.pytest_args(k, path or [], extra), jobs=int(jobs)))
    elif container:
        args = ["test", *(["-k", k] if k else []), *(a for p in path or [] for a in ("--path", p))]
        _done(commands.in_container([*args, "--", *extra] if extra else args, _settings(name)))
    else:
        _done(commands.test(k, path, extra))


@task(help={"container": "run inside the dev container", "name": _CONTAINER_HELP["name"]})
def check(c: Context, container: bool = False, name: str | None = None) -> None:
    """Lint and type-check: ruff check + mypy."""
    _done(commands.in_container(["check"], _settings(name)) if container else commands.check())


@task(help={"quick": "short run", "micro": "micro-benchmarks only", "servers": "comma-separated servers",
            "shapes": "comma-separated load shapes", "duration": "seconds per measurement",
            "results_dir": "where results go", "container": "run inside the dev container",
            "name": _CONTAINER_HELP["name"]})
def bench(c: Context, quick: bool = False, micro: bool = False, servers: str | None = None,
          shapes: str | None = None, duration: float | None = None, results_dir: str = "bench/results",
          container: bool = False, name: str | None = None) -> None:
    """Run the benchmarks (GMF vs peer servers, h2load)."""
    if container:
        args = ["bench", *(["--quick"] if quick else []), *(["--micro"] if micro else []),
                *(["--servers", servers] if servers else []), *(["--shapes", shapes] if shapes else []),
                *(["--duration", str(duration)] if duration is not None else []), "--results-dir", results_dir]
        _done(commands.in_container(args, _settings(name)))
        return
    from bench import harness as bench_harness

    _done(bench_harness.run(quick=quick, micro=micro, servers=servers, shapes=shapes,
                            duration=float(duration) if duration is not None else None, results_dir=results_dir))


@task(help={"examples": "number of examples (default 10000)", "minutes": "run this long instead",
            "seed": "first batch seed (replays a reported failure)", "batch": "examples per seed"})
def fuzz(c: Context, examples: int | None = None, minutes: float | None = None, seed: int | None = None,
         batch: int = 500) -> None:
    """Fuzz the sans-IO HTTP/2 core (hypothesis) with random and mutated frame sequences."""
    from tests.fuzzing import harness as fuzz_harness

    _done(fuzz_harness.run(int(examples) if examples is not None else None,
                           float(minutes) if minutes is not None else None,
                           int(seed) if seed is not None else None, int(batch)))


@task(help={"rpcs": "unary RPCs", "connections": "client connections", "streaming": "streaming RPCs",
            "kill_every": "seconds between SIGKILLs of a random worker (0: never)", "workers": "server workers",
            "clients": "client processes", "concurrency": "calls in flight per client process",
            "fail_fast": "clients without wait_for_ready"})
def soak(c: Context, rpcs: int = 1_000_000, connections: int = 64, streaming: int = 1000, kill_every: float = 10.0,
         workers: int = 2, clients: int = 2, concurrency: int = 64, fail_fast: bool = False) -> None:
    """Soak: many RPCs over many connections while workers are killed; every RPC accounted."""
    from soak import harness as soak_harness

    config = soak_harness.SoakConfig(rpcs=int(rpcs), connections=int(connections), streaming=int(streaming),
                                     kill_every=float(kill_every), workers=int(workers), clients=int(clients),
                                     concurrency=int(concurrency), fail_fast=fail_fast)
    _done(0 if soak_harness.run(config).passed else 1)


@task(help={"container": "run inside the dev container", "name": _CONTAINER_HELP["name"]})
def proto(c: Context, container: bool = False, name: str | None = None) -> None:
    """Regenerate the Python code of proto/*.proto (grpcio-tools)."""
    _done(commands.in_container(["proto"], _settings(name)) if container else commands.proto())


@task(help={"write_profile": "regenerate .devcontainer/seccomp.json (io_uring allowed) first"})
def devcontainer(c: Context, write_profile: bool = False) -> None:
    """Validate .devcontainer/devcontainer.json (JSONC, required keys, Dockerfile exists)."""
    if write_profile:
        devcontainer_cfg.write_profile()
    _done(devcontainer_cfg.validate())


@task(help={"url": "the server's Prometheus endpoint (default http://127.0.0.1:9464/metrics)"})
def stats(c: Context, url: str | None = None) -> None:
    """Print a running server's counters (it must run with metrics_port / --metrics-port)."""
    _done(commands.stats(url))


@task(help={"command": "run this command in the shell instead of an interactive one"})
def nix_shell(c: Context, command: str | None = None) -> None:
    """Enter nix/shell.nix (python3 + deps, protoc, a C compiler) when Nix is installed."""
    _done(nix.enter(command))


ns = Collection(base_image, build_image, run, test, check, bench, fuzz, soak, proto, devcontainer, nix_shell, stats)
ns.add_collection(Collection("container", up, status, shell, logs, down))
