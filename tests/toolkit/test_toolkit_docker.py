"""The toolkit against a real Docker engine: images, the container lifecycle, run, test, io_uring."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from gmf.toolkit import image, proxy, seccomp
from tests.helpers import ROOT
from tests.helpers.net import free_port, wait_port
from tests.toolkit.toolkit_helpers import exec_out, invoke

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]  # the first test builds the images


def test_base_image_is_local_and_carries_the_ca_bundle(base_image: Any, docker_client: Any) -> None:
    base = docker_client.images.get(image.BASE_TAG)
    assert base.labels.get(image.CA_LABEL) == proxy.fingerprint(proxy.ca_bundle())
    # a second run is a no-op
    again = invoke("base-image", check=True)
    assert "up to date" in again.stderr


def test_build_image_reports_tag_and_size(dev_image: Any, docker_client: Any) -> None:
    assert "Docker image gmf-dev:bookworm has been built (" in dev_image.stdout
    assert "MB" in dev_image.stdout.splitlines()[-1]
    out = docker_client.containers.run(
        image.DEV_TAG, ["sh", "-c", "python --version && protoc --version && strace -V | head -1 && "
                        "h2load --version | head -1 && python -c 'import grpc, invoke; print(\"deps\")'"],
        remove=True,
    ).decode()
    assert "Python 3.11" in out and "libprotoc" in out and "strace" in out and "h2load" in out
    assert "deps" in out
    # The image can build the checkout's io_uring binding for its own Python (what a 3.13 or
    # 3.14 image does on first use), ignoring a build the host may have left in the checkout:
    code = ("import sys; sys.modules['gmf.runtime._uring'] = None\n"
            "from gmf.runtime.uring_binding import load\n"
            "m, why = load(); print(m.__file__ if m else why); print(m.Ring(8, 0).entries)")
    out = docker_client.containers.run(
        image.DEV_TAG, ["python", "-c", code], volumes={str(ROOT): {"bind": "/usr/src/app", "mode": "ro"}},
        environment={"XDG_CACHE_HOME": "/tmp/cache"}, security_opt=seccomp.security_opts(image.DEV_TAG) or None,
        remove=True,
    ).decode()
    assert "/tmp/cache/gmf/_uring-" in out and "(8, 16)" in out, out


def test_missing_base_without_registry_says_what_to_do(docker_client: Any) -> None:
    proc = invoke("build-image", "--base", "gmf-test-missing:none", "--tag", "gmf-test-never:built")
    assert proc.returncode != 0
    assert "base image gmf-test-missing:none is missing and cannot be pulled" in proc.stderr
    assert "invoke base-image" in proc.stderr and "Traceback" not in proc.stderr


def test_container_lifecycle(dev_image: Any, docker_client: Any) -> None:
    env = {"GMF_DEV_CONTAINER": "gmf-test-life", "GMF_DEV_PORT": str(free_port())}
    try:
        first = invoke("container.up", env=env, check=True)
        assert "created and running" in first.stderr
        second = invoke("container.up", env=env, check=True)
        assert "already running" in second.stderr
        status = invoke("container.status", env=env, check=True).stdout
        assert "gmf-test-life: running" in status and f":{env['GMF_DEV_PORT']}->50051/tcp" in status
        box = docker_client.containers.get("gmf-test-life")
        mounts = {m["Destination"]: m for m in box.attrs["Mounts"]}
        assert "/usr/src/app" in mounts and mounts["/root/.cache/pip"]["Type"] == "volume"
        assert invoke("container.logs", env=env).returncode == 0
        invoke("container.down", env=env, check=True)
        assert "not created" in invoke("container.status", env=env, check=True).stdout
        again = invoke("container.up", env=env, check=True)
        assert "created and running" in again.stderr
    finally:
        invoke("container.down", env=env)


def test_io_uring_works_in_the_dev_container(dev_container: str, docker_client: Any) -> None:
    code, out = exec_out(docker_client, dev_container, ["python", "-c", seccomp.PROBE])
    assert code == 0 and out.strip() == "0", f"io_uring_setup failed in the container: errno {out}"


def test_the_runtime_reports_uring_in_the_dev_container(dev_container: str, docker_client: Any) -> None:
    code, out = exec_out(docker_client, dev_container, ["python", "-m", "gmf", "runtime"])
    assert code == 0, out
    assert out.strip().startswith("uring"), f"the runtime does not report uring in the container: {out}"


def test_gmf_seccomp_profile_allows_io_uring_and_blocks_namespaces(dev_image: Any, docker_client: Any) -> None:
    out = docker_client.containers.run(
        image.DEV_TAG, ["sh", "-c", f"python -c \"{seccomp.PROBE}\"; unshare -U true 2>/dev/null || echo blocked"],
        security_opt=seccomp.option("gmf"), remove=True,
    ).decode().split()
    assert out == ["0", "blocked"]


def test_memlock_is_not_raised_on_new_kernels(dev_container: str, docker_client: Any) -> None:
    box = docker_client.containers.get(dev_container)
    assert not box.attrs["HostConfig"].get("Ulimits")


def test_pip_reaches_pypi_from_the_container(dev_container: str, docker_client: Any) -> None:
    """Proxy + CA bundle: pip inside the container downloads from the package index."""
    code, out = exec_out(docker_client, dev_container,
                         ["pip", "download", "--no-deps", "--no-cache-dir", "-d", "/tmp/pipcheck", "six"])
    assert code == 0, out


def test_run_helloworld_in_a_container_answers_grpcurl_on_the_host(dev_image: Any) -> None:
    port = free_port()
    args = ("run", "--example", "helloworld", "--container", "--port", str(port))
    try:
        started = invoke(*args, "--detach", check=True, timeout=180)
        assert f"ready: 127.0.0.1:{port}" in started.stderr
        reply = subprocess.run(
            ["grpcurl", "-plaintext", "-d", '{"name":"John"}', "-proto", "proto/helloworld/helloworld.proto",
             f"127.0.0.1:{port}", "helloworld.Greeter/SayHello"],
            cwd=str(ROOT), capture_output=True, text=True, timeout=60,
        )
        assert '"message": "Hello John!"' in reply.stdout, reply.stderr
        client = invoke(*args, "--client", check=True, timeout=180)
        assert "Hello" in client.stdout
    finally:
        invoke(*args, "--stop")


def test_sigterm_to_a_container_run_removes_its_container(dev_image: Any, docker_client: Any) -> None:
    """SIGTERM to `invoke run --container` stops and removes the container it started."""
    import os
    import signal
    import sys

    from gmf.toolkit import container

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "run", "--example", "helloworld", "--container", "--port",
                             str(port)], cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    name = f"gmf-run-helloworld-{port}"
    try:
        wait_port(port, 180)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert container.find(docker_client, name) is None, err
        assert f"stopping {name}" in err
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        box = container.find(docker_client, name)
        if box is not None:
            box.remove(force=True)


def test_invoke_test_in_the_container_passes_results_through(dev_container: str) -> None:
    ok = invoke("test", "--container", "--path", "tests/toolkit/test_toolkit_units.py", "-k", "jsonc or memlock",
                timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "2 passed" in ok.stdout
    none = invoke("test", "--container", "--path", "tests/toolkit/test_toolkit_units.py", "-k", "no_such_test_zz",
                  timeout=300)
    assert none.returncode == 5  # pytest's "no tests collected" comes through unchanged


def test_no_engine_is_a_clear_error() -> None:
    dead = {"DOCKER_HOST": "unix:///tmp/gmf-no-docker.sock"}
    for args in (("container.up",), ("build-image",), ("test", "--container")):
        proc = invoke(*args, env=dead, timeout=60)
        assert proc.returncode == 1, proc
        assert "no Docker engine at unix:///tmp/gmf-no-docker.sock; start Docker or use --native" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_run_without_engine_falls_back_to_native() -> None:
    port = free_port()
    proc = subprocess.Popen(
        ["python", "-m", "invoke", "run", "--example", "helloworld", "--port", str(port)],
        cwd=str(ROOT), env={**__import__("os").environ, "DOCKER_HOST": "unix:///tmp/gmf-no-docker.sock"},
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, start_new_session=True,
    )
    try:

        wait_port(port, 60)
        client = invoke("run", "--example", "helloworld", "--native", "--client", "--port", str(port), timeout=60)
        assert "Hello" in client.stdout, client.stderr
    finally:
        import os
        import signal

        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert "running natively" in err.splitlines()[0]
