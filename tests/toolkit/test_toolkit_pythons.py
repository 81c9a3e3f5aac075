"""The Python matrix: the tested versions, the Debian suites they come from, `invoke test --python`
and pytest arguments passed through (units here; the images and containers at the end)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import sysconfig
import time
import tomllib
import venv
from pathlib import Path
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet

from gmf.toolkit import aptsources, commands, image, matrix, pythons
from gmf.toolkit.errors import ToolkitError
from tests.helpers import ROOT
from tests.toolkit.toolkit_helpers import invoke, need

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_pyproject_and_readme_name_the_tested_versions() -> None:
    tested = pythons.versions()
    classified = [c.rsplit(" :: ", 1)[1] for c in PROJECT["classifiers"]
                  if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]
    assert classified == tested
    allowed = SpecifierSet(PROJECT["requires-python"])
    for version in tested:  # every tested version installs; nothing older than the oldest tested does
        assert f"{version}.0" in allowed, f"requires-python refuses the tested {version}"
    oldest = min(int(v.split(".")[1]) for v in tested)
    for minor in range(8, oldest):
        assert f"3.{minor}.0" not in allowed, f"requires-python allows the untested 3.{minor}"
    assert f"Python {', '.join(tested[:-1])} and {tested[-1]}" in (ROOT / "README.md").read_text()


def test_select_versions() -> None:
    assert [t.suite for t in pythons.select("all")] == ["bookworm", "trixie", "forky"]
    assert [t.python for t in pythons.select(" 3.14, 3.13,3.14 ")] == ["3.14", "3.13"]
    assert pythons.select("3.13")[0].dev_tag == "gmf-dev:trixie"
    assert pythons.DEFAULT.base_tag == image.BASE_TAG and pythons.DEFAULT.dev_tag == image.DEV_TAG
    for bad in ("3.12", "py3.13", ""):
        with pytest.raises(ToolkitError, match="choose one or more of 3.11, 3.13, 3.14"):
            pythons.select(bad)


def test_release_files_are_parsed() -> None:
    testing = aptsources.parse_release(
        "Origin: Debian\nSuite: testing\nCodename: forky\nDate: Fri, 30 Oct 2026 08:08:01 UTC\n"
        "Valid-Until: Fri, 06 Nov 2026 08:08:01 UTC\nMD5Sum:\n 6d41 1834765 contrib/Contents-all\n")
    assert (testing.suite, testing.codename) == ("testing", "forky")
    assert testing.valid_until is not None and testing.valid_until.isoformat() == "2026-11-06T08:08:01+00:00"
    assert testing.expired(testing.valid_until.replace(day=7))
    assert not testing.expired(testing.valid_until.replace(day=5))
    stable = aptsources.parse_release("Suite: stable\nCodename: trixie\n")
    assert stable.valid_until is None and not stable.expired()


def host_mirror() -> str:
    mirror = aptsources.debian_mirror(aptsources.host_sources())
    need(mirror is not None, "no Debian mirror in this host's apt sources")
    assert mirror is not None
    return mirror


def test_the_host_mirror_carries_every_tested_suite() -> None:
    mirror = host_mirror()
    for target in pythons.TARGETS:
        release = aptsources.fetch_release(mirror, target.suite)
        assert release is not None and release.codename == target.suite
    assert aptsources.fetch_release(mirror, "gmf-no-such-suite") is None


def test_a_suite_missing_from_the_mirror_is_one_clear_error() -> None:
    with pytest.raises(ToolkitError, match="has no gmf-no-such-suite .*--mirror.*3.11, 3.13, 3.14"):
        image.suite_sources("gmf-no-such-suite", host_mirror(), None)
    with pytest.raises(ToolkitError, match="does not answer"):
        aptsources.fetch_release("http://127.0.0.1:9", "trixie", timeout=5)


def test_image_sources_for_a_suite() -> None:
    mirror = host_mirror()
    lines = image.suite_sources("trixie", mirror, None)
    assert lines[0].endswith(f"{mirror} trixie main") and f"{mirror} trixie-updates main" in lines[1]


def test_pytest_arguments_after_double_dash_keep_their_quoting() -> None:
    argv = ["invoke", "test", "--", "-k", "a or b", "-x"]
    assert commands.passthrough("-k a or b -x", argv) == ["-k", "a or b", "-x"]
    assert commands.passthrough("-k 'a or b'", ["invoke", "test"]) == ["-k", "a or b"]
    assert commands.passthrough("", ["invoke", "test"]) == []
    assert commands.pytest_command("py", commands.pytest_args("k1", ["tests/x.py"], ["-x"])) == \
        ["py", "-m", "pytest", "-ra", "-k", "k1", "tests/x.py", "-x"]


def test_summary_table() -> None:
    bookworm, trixie = pythons.select("3.11,3.13")
    text = matrix.table([matrix.Outcome(bookworm, 0, "5 passed in 1.00s", 3.0, 61.0),
                         matrix.Outcome(trixie, 1, "1 failed, 4 passed in 1.20s", 75.0, 9.5)])
    rows = [line.split() for line in text.splitlines() if line.startswith("3.")]
    assert rows[0][:5] == ["3.11", "bookworm", "passed", "0m03s", "1m01s"]
    assert rows[1][:5] == ["3.13", "trixie", "FAILED", "1m15s", "0m10s"] and "1 failed" in text
    assert matrix.SUMMARY.search("==== 3 failed, 410 passed, 2 skipped in 171.20s (0:02:51) ====")


def test_tasks_without_the_dev_extra_name_the_fix(tmp_path: Path) -> None:
    """This Python's packages in a venv, less pytest, ruff and mypy (the [dev] extra not installed)."""
    dev_only = {"pytest", "pytest_timeout", "pytest_benchmark", "ruff", "mypy"}
    venv.create(tmp_path / "venv", with_pip=False)
    site = next((tmp_path / "venv/lib").glob("python3*/site-packages"))
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        name = re.split(r"-|\.(?:dist|egg)-info|\.py$|\.pth$", entry.name)[0].lstrip("_").lower()
        if name not in dev_only and not name.startswith("editable"):
            (site / entry.name).symlink_to(entry)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    for task, missing in (("test", "pytest is not installed"), ("check", "ruff and mypy are not installed")):
        proc = subprocess.run([str(tmp_path / "venv/bin/python"), "-m", "invoke", task], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1, proc
        assert missing in proc.stderr and "pip install -e '.[dev]'" in proc.stderr and "venv" in proc.stderr
        assert "No module named" not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- with a Docker engine


@pytest.mark.docker
@pytest.mark.timeout(1800)  # a cold engine makes the trixie and forky images first (~2 min each)
def test_python_matrix_runs_each_version_and_sums_up(dev_image: Any) -> None:
    selection = ("--path", "tests/toolkit/test_toolkit_units.py", "--")
    ok = invoke("test", "--python", "all", "--jobs", "3", *selection, "-k", "jsonc or memlock", timeout=1700)
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
    for target in pythons.TARGETS:
        assert f"platform linux -- Python {target.python}." in ok.stdout
        assert re.search(rf"^{re.escape(target.python)}\s+{target.suite}\s+passed\s.*2 passed", ok.stdout, re.M), \
            ok.stdout[-2000:]
    none = invoke("test", "--python", "3.14", *selection, "-k", "no_such_test_zz", timeout=600)
    assert none.returncode == 5  # pytest's "no tests collected" comes through unchanged
    assert "steps from the layer cache" in none.stdout  # built once: the second run is cached
    mixed = invoke("test", "--python", "3.13,3.11", "--jobs", "2", *selection, "-k", "no_such_test_zz", timeout=600)
    assert mixed.returncode == 5 and mixed.stdout.count("no tests collected") == 2
    bad = invoke("test", "--python", "3.12", timeout=60)
    assert bad.returncode == 1 and "choose one or more of 3.11, 3.13, 3.14" in bad.stderr


@pytest.mark.docker
@pytest.mark.timeout(300)
def test_sigterm_stops_and_removes_the_test_container(dev_image: Any, docker_client: Any) -> None:
    env = {**os.environ, "GMF_DEV_CONTAINER": "unused"}
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "test", "--python", "3.11", "--", "-m", "core", "-q"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    name = f"gmf-pytest-bookworm-{proc.pid}"
    try:
        deadline = time.monotonic() + 120
        while not docker_client.containers.list(filters={"name": name}):
            assert proc.poll() is None and time.monotonic() < deadline, "the test container never started"
            time.sleep(0.5)
        time.sleep(2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130
        assert not docker_client.containers.list(all=True, filters={"name": name})
        assert f"stopping {name}" in (proc.stderr.read() if proc.stderr else "")
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.docker
@pytest.mark.timeout(900)
def test_container_run_shows_skip_reasons_and_takes_pytest_arguments(dev_container: str) -> None:
    proc = invoke("test", "--container", "--path", "tests/toolkit/test_toolkit_units.py", "--",
                  "-k", "nix_shell_parses or jsonc", "-v", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASSED" in proc.stdout  # -v came through
    assert "SKIPPED [1]" in proc.stdout and "nix-instantiate not installed" in proc.stdout  # -ra


def test_python_version_of_this_process_is_a_tested_one() -> None:
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in pythons.versions()
