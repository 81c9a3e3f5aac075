"""`invoke nix-shell`: enter nix/shell.nix when Nix is installed, else say how to get it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from . import checkout
from .errors import ToolkitError, note

HOW_TO_GET_NIX = (
    "Nix is not installed: get it from https://nixos.org/download (multi-user install), or on "
    "Debian/Ubuntu `apt-get install nix-bin` and add a nixpkgs channel "
    "(`nix-channel --add https://nixos.org/channels/nixos-24.11 nixpkgs && nix-channel --update`); "
    "or use the dev container instead (`invoke container.shell`)"
)


def has_nixpkgs() -> bool:
    """True when `<nixpkgs>` resolves (a channel or NIX_PATH), which shell.nix imports."""
    return subprocess.run(["nix-instantiate", "--find-file", "nixpkgs"], capture_output=True).returncode == 0


def shell_nix() -> Path:
    return checkout.root() / "nix" / "shell.nix"


def parse_check() -> None:
    """`nix-instantiate --parse nix/shell.nix`: syntax only, works without nixpkgs."""
    if shutil.which("nix-instantiate") is None:
        raise ToolkitError(HOW_TO_GET_NIX)
    proc = subprocess.run(["nix-instantiate", "--parse", str(shell_nix())], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ToolkitError(f"nix/shell.nix does not parse: {proc.stderr.strip()}")


def enter(command: str | None = None) -> int:
    if shutil.which("nix-shell") is None:
        raise ToolkitError(HOW_TO_GET_NIX)
    parse_check()
    if not has_nixpkgs():
        raise ToolkitError(
            "Nix is installed but <nixpkgs> is not on NIX_PATH, which nix/shell.nix imports: add a channel "
            "(`nix-channel --add https://nixos.org/channels/nixos-24.11 nixpkgs && nix-channel --update`) "
            "or run with NIX_PATH=nixpkgs=/path/to/nixpkgs"
        )
    args = ["nix-shell", str(shell_nix())]
    if command:
        args += ["--run", command]
    note(" ".join(args))
    return subprocess.call(args, cwd=checkout.root())
