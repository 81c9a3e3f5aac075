"""Toolkit pieces that need no Docker engine: parsing, limits, configs, task listing."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gmf.toolkit import aptsources, checkout, container, deps, devcontainer, proxy, seccomp
from gmf.toolkit.errors import ToolkitError
from tests.helpers import ROOT
from tests.toolkit.toolkit_helpers import invoke, need

TASKS = ["base-image", "build-image", "container.up", "container.status", "container.shell",
         "container.logs", "container.down", "run", "test", "check", "bench", "fuzz", "soak", "proto",
         "devcontainer", "nix-shell", "stats"]


def test_list_shows_every_task_with_help() -> None:
    out = invoke("--list", check=True).stdout
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip() and line.startswith("  ")
             and not line.startswith("   ")}
    for name in TASKS:
        assert name in lines, f"{name} missing from invoke --list:\n{out}"
        assert len(lines[name].split()) > 2, f"{name} has no help line"


def test_deb822_and_one_line_sources() -> None:
    deb822 = (
        "Types: deb\n# comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\nComponents: main\n"
    )
    one_line = "deb [arch=amd64 signed-by=/x.gpg] https://apt.example/debian trixie main contrib\n" \
               "# deb http://commented.example/debian bookworm main\n"
    sources = aptsources.parse_deb822(deb822) + aptsources.parse_one_line(one_line)
    assert [s.uri for s in sources] == ["http://mirror.example/debian", "http://mirror.example/debian-security",
                                        "https://apt.example/debian"]
    assert aptsources.debian_mirror(sources) == "http://mirror.example/debian"
    assert aptsources.debian_security_mirror(sources) == "http://mirror.example/debian-security"
    assert aptsources.debian_mirror(aptsources.parse_one_line("deb http://ppa.example/ubuntu jammy main")) is None


def test_host_apt_sources_give_a_mirror_on_debian_hosts() -> None:
    if not Path("/etc/debian_version").exists():
        pytest.skip("not a Debian host")
    assert aptsources.debian_mirror(aptsources.host_sources()), "no Debian mirror found in this host's apt sources"


def test_memlock_only_on_old_kernels_and_never_above_the_hard_limit() -> None:
    inf = resource.RLIM_INFINITY
    assert container.memlock_limit("6.18.44-fc", 8 << 20, None) is None
    assert container.memlock_limit("5.12.0", 8 << 20, None) is None
    assert container.memlock_limit("5.10.0-21-amd64", 8 << 20, None) == 8 << 20
    assert container.memlock_limit("4.19.0", inf, None) == inf
    assert container.memlock_limit("6.1.0", 8 << 20, -1) == 8 << 20  # "unlimited" request capped
    assert container.memlock_limit("6.1.0", 8 << 20, 1 << 20) == 1 << 20


def test_proxy_env_and_ca_bundle(tmp_path: Path) -> None:
    env = {"https_proxy": "http://proxy:3128", "NO_PROXY": "localhost"}
    assert proxy.proxy_env(env) == {"HTTPS_PROXY": "http://proxy:3128", "https_proxy": "http://proxy:3128",
                                    "NO_PROXY": "localhost", "no_proxy": "localhost"}
    bundle = tmp_path / "corp.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    assert proxy.ca_bundle(None, {"PIP_CERT": str(bundle)}) == bundle
    assert proxy.ca_bundle(str(bundle), {}) == bundle
    with pytest.raises(ToolkitError, match="no such file"):
        proxy.ca_bundle(str(tmp_path / "missing.pem"), {})


def test_deps_expands_self_referencing_extras() -> None:
    reqs = deps.requirements(ROOT / "pyproject.toml", ["dev"])
    names = {r.split(">")[0].split("=")[0].split(";")[0].split("[")[0].strip().lower() for r in reqs}
    assert {"grpcio", "protobuf", "invoke", "docker", "pytest", "uvloop"} <= names
    assert not any(r.startswith("gmf") for r in reqs)


def test_devcontainer_config_is_valid_and_profile_current() -> None:
    assert devcontainer.validate() == 0
    data = devcontainer.load()
    assert data["build"]["args"]["BASE"] == "gmf-base:bookworm"
    assert json.loads((ROOT / ".devcontainer/seccomp.json").read_text()) == seccomp.gmf_profile()


def test_jsonc_comments_and_trailing_commas() -> None:
    text = '{\n // c\n "a": "http://x//y", /* b */ "b": [1, 2,],\n}'
    assert json.loads(devcontainer.strip_jsonc(text)) == {"a": "http://x//y", "b": [1, 2]}


def test_devcontainer_problems_are_named(tmp_path: Path) -> None:
    found = devcontainer.problems({"build": {"dockerfile": "nope/Dockerfile"}}, tmp_path)
    text = "; ".join(found)
    assert "does not exist" in text and "forwardPorts" in text and "seccomp" in text


def test_gmf_seccomp_profile_allows_io_uring() -> None:
    profile = seccomp.gmf_profile()
    denied = {n for rule in profile["syscalls"] for n in rule["names"]}
    assert not any(n.startswith("io_uring") for n in denied)
    assert {"unshare", "mount", "keyctl", "bpf"} <= denied
    assert seccomp.option("unconfined") == ["seccomp=unconfined"] and seccomp.option("default") == []
    with pytest.raises(ToolkitError):
        seccomp.security_opts("img", "bogus")


def test_seccomp_detection_falls_back_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    from gmf.toolkit import engine

    seccomp.detect.cache_clear()
    monkeypatch.setattr(engine, "client", lambda: object())
    answers = {"default": 1, "gmf": 0, "unconfined": 0}  # EPERM under the default profile
    monkeypatch.setattr(seccomp, "probe", lambda client, image, choice: answers[choice])
    assert seccomp.detect("img-a") == "gmf"
    answers["gmf"] = 1
    assert seccomp.detect("img-b") == "unconfined"
    seccomp.detect.cache_clear()


def test_nix_shell_parses() -> None:
    need(shutil.which("nix-instantiate") is not None, "nix-instantiate not installed (apt-get install nix-bin)")
    proc = subprocess.run(["nix-instantiate", "--parse", str(ROOT / "nix/shell.nix")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_nix_shell_task_says_what_is_missing() -> None:
    proc = invoke("nix-shell", "--command", "true")
    if proc.returncode == 0:
        pytest.skip("Nix with nixpkgs is set up here: the shell was entered")
    assert "Traceback" not in proc.stderr
    assert "Nix is not installed" in proc.stderr or "<nixpkgs>" in proc.stderr


def test_unknown_example_lists_the_examples() -> None:
    proc = invoke("run", "--example", "nosuch", "--native")
    assert proc.returncode != 0
    assert "unknown example 'nosuch'" in proc.stderr and "helloworld" in proc.stderr
    assert "nginx" not in proc.stderr  # a config file's folder, not an example to run
    assert "Traceback" not in proc.stderr


def test_sigterm_to_a_native_run_stops_the_server() -> None:
    """SIGTERM to `invoke run` (only to it, as a process manager or `kill` sends it) stops the
    server it started, which drains; nothing is left listening."""
    import signal

    from tests.helpers import poll
    from tests.helpers.net import free_port, port_open, wait_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "run", "--example", "helloworld", "--native", "--port",
                             str(port)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        wait_port(port, 60)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        poll.until(lambda: not port_open(port), f"the server on port {port} to stop")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130


def test_the_checkout_is_found_from_the_package() -> None:
    assert checkout.root() == ROOT
    assert container.Settings().workspace == ROOT


def test_an_installed_copy_imports_and_names_the_fix(tmp_path: Path) -> None:
    """gmf without a checkout around it (as pip installs it): the toolkit imports, and toolkit work
    fails with one message that says what to do, not a traceback from deep inside."""
    shutil.copytree(ROOT / "gmf", tmp_path / "gmf", ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import gmf.toolkit.commands, gmf.toolkit.container, gmf.toolkit.devcontainer, gmf.toolkit.image, "
            "gmf.toolkit.nix, gmf.toolkit.proto, gmf.toolkit.run\n"
            "from gmf.toolkit import commands\n"
            "from gmf.toolkit.errors import ToolkitError\n"
            "try:\n    commands.check()\nexcept ToolkitError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert f"gmf was imported from {tmp_path / 'gmf'}" in out.stdout
    assert "clone the repository, run `pip install -e '.[toolkit]'` in it and run `invoke` from there" in out.stdout


def test_the_wheel_holds_the_package_without_the_dev_harness(tmp_path: Path) -> None:
    """What pip installs: gmf/ with the container toolkit; bench/, soak/ and tests/ stay in the checkout.
    Built from a copy of the sources, so no build/ folder of an earlier build is packed."""
    source = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "node_modules", "results", ".*")
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("gmf", "bench", "soak", "tests"):
        shutil.copytree(ROOT / name, source / name, ignore=skip)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path), str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = tmp_path.glob("gmf-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packages = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert packages == {"gmf"}, packages
    assert "gmf/toolkit/image.py" in names and "gmf/toolkit/checkout.py" in names
    assert "gmf/runtime/_uring.c" in names  # uring_binding builds it where the wheel has no build of it
    assert not [n for n in names if any(part in n for part in ("bench", "soak", "fuzz"))], names
