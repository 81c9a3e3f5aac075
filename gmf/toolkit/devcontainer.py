"""Validate .devcontainer/devcontainer.json (JSON with comments) without the devcontainers CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from . import checkout
from .errors import ToolkitError

CONFIG = Path(".devcontainer") / "devcontainer.json"  # in the checkout
# The seccomp profile the devcontainer runs with: seccomp.gmf_profile() as a file, because
# runArgs can only name a path (`invoke devcontainer --write-profile` regenerates it).
PROFILE = Path(".devcontainer") / "seccomp.json"


def profile_text() -> str:
    from .seccomp import gmf_profile

    return json.dumps(gmf_profile(), indent=1) + "\n"


def write_profile(path: Path | None = None) -> None:
    path = path or checkout.root() / PROFILE
    path.write_text(profile_text())
    print(f"wrote {path.relative_to(checkout.root())}")
REQUIRED = ("name", "build", "runArgs", "forwardPorts", "postCreateCommand", "customizations")


def strip_jsonc(text: str) -> str:
    """Remove // and /* */ comments (outside strings) and trailing commas."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("//", i):
            i = text.find("\n", i) if "\n" in text[i:] else n
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            out.append(ch)
            i += 1
    return re.sub(r",(\s*[}\]])", r"\1", "".join(out))


def load(path: Path | None = None) -> dict[str, Any]:
    path = path or checkout.root() / CONFIG
    if not path.is_file():
        raise ToolkitError(f"{path} is missing")
    try:
        data = json.loads(strip_jsonc(path.read_text()))
    except json.JSONDecodeError as exc:
        raise ToolkitError(f"{path}: not valid JSON with comments: {exc}") from None
    if not isinstance(data, dict):
        raise ToolkitError(f"{path}: the top level must be an object")
    return data


def problems(data: dict[str, Any], folder: Path) -> list[str]:
    """Everything wrong with the config (empty when it is good)."""
    found = [f"missing key {key!r}" for key in REQUIRED if key not in data]
    build = data.get("build") or {}
    dockerfile = build.get("dockerfile")
    if not dockerfile:
        found.append("build.dockerfile is not set")
    elif not (folder / dockerfile).is_file():
        found.append(f"build.dockerfile {dockerfile!r} does not exist (relative to {folder})")
    if not (folder / build.get("context", ".")).is_dir():
        found.append(f"build.context {build.get('context')!r} is not a folder (relative to {folder})")
    if not build.get("args", {}).get("BASE"):
        found.append("build.args.BASE is not set (the local base tag made by `invoke base-image`)")
    if not any("seccomp" in str(arg) for arg in data.get("runArgs", [])):
        found.append("runArgs has no seccomp setting (io_uring is blocked by newer Docker's default profile)")
    if any(PROFILE.name in str(arg) for arg in data.get("runArgs", [])) and (
        not (folder / PROFILE.name).is_file() or (folder / PROFILE.name).read_text() != profile_text()
    ):
        found.append(f"{PROFILE.name} is missing or stale: run `invoke devcontainer --write-profile`")
    if 50051 not in data.get("forwardPorts", []):
        found.append("forwardPorts does not include 50051")
    extensions = data.get("customizations", {}).get("vscode", {}).get("extensions", [])
    if "ms-python.python" not in extensions:
        found.append("customizations.vscode.extensions lacks ms-python.python")
    return found


def validate(path: Path | None = None) -> int:
    path = path or checkout.root() / CONFIG
    data = load(path)
    found = problems(data, path.parent)
    if found:
        raise ToolkitError(f"{path.relative_to(checkout.root())}: " + "; ".join(found))
    build = data["build"]
    print(f"{path.relative_to(checkout.root())} is valid: builds {build['dockerfile']} (BASE={build['args']['BASE']}), "
          f"forwards {data['forwardPorts']}, runArgs {data['runArgs']}")
    print("use it: `invoke base-image`, then VS Code 'Reopen in Container' or "
          "`devcontainer up --workspace-folder .`")
    return 0
