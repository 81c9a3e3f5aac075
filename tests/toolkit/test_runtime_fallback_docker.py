"""Runtime fallback for real: in a container whose seccomp profile denies io_uring (what newer
Docker releases do by default), "auto" falls back to uvloop and says why, and asking for
uring explicitly is one clear error."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from gmf.toolkit import image, seccomp
from tests.helpers import ROOT

pytestmark = pytest.mark.docker


def _profile_denying_io_uring() -> list[str]:
    profile = copy.deepcopy(seccomp.gmf_profile())
    profile["syscalls"].append({"names": ["io_uring_setup", "io_uring_enter", "io_uring_register"],
                                "action": "SCMP_ACT_ERRNO", "errnoRet": seccomp.EPERM})
    return ["seccomp=" + json.dumps(profile, separators=(",", ":"))]


def _run(docker_client: Any, command: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    box = docker_client.containers.run(
        image.DEV_TAG, command, security_opt=_profile_denying_io_uring(), environment=env or {},
        volumes={str(ROOT): {"bind": "/usr/src/app", "mode": "ro"}}, working_dir="/usr/src/app", detach=True,
    )
    try:
        code = box.wait(timeout=120)["StatusCode"]
        return code, box.logs().decode()
    finally:
        box.remove(force=True)


def test_auto_falls_back_when_seccomp_blocks_io_uring(dev_image: Any, docker_client: Any) -> None:
    code, out = _run(docker_client, ["python", "-m", "gmf", "runtime"])
    assert code == 0, out
    assert out.startswith("uvloop: io_uring unavailable: "), out
    assert "Operation not permitted" in out and "seccomp" in out, out


def test_explicit_uring_under_blocking_seccomp_is_one_clear_error(dev_image: Any, docker_client: Any) -> None:
    code, out = _run(docker_client, ["python", "-m", "gmf", "runtime"], env={"GMF_RUNTIME": "uring"})
    assert code == 1
    assert out.strip().startswith("gmf: error: runtime 'uring' set by GMF_RUNTIME but "), out
    assert "Traceback" not in out


def test_server_serves_on_the_fallback_runtime(dev_image: Any, docker_client: Any) -> None:
    script = (
        "import sys, grpc; sys.path.insert(0, '.')\n"
        "from tests.helpers.apps import build_server\n"
        "import helloworld_pb2, helloworld_pb2_grpc\n"
        "handle = build_server(workers=1).start('127.0.0.1:0')\n"
        "with grpc.insecure_channel(f'127.0.0.1:{handle.port}') as ch:\n"
        "    print(helloworld_pb2_grpc.GreeterStub(ch).SayHello(helloworld_pb2.HelloRequest(name='box'), timeout=10).message)\n"
        "handle.stop(1)\n"
    )
    code, out = _run(docker_client, ["python", "-c", script])
    assert code == 0, out
    assert "runtime: uvloop (io_uring unavailable" in out and "Hello box!" in out, out
