#!/usr/bin/env bash
# Print the path of a working Python X.Y interpreter (default 3.13), building one if needed.
#
# Looks, in order: pythonX.Y on PATH (run, not just found: pyenv shims refuse without
# PYENV_VERSION), interpreters a version manager already holds (pyenv, uv, asdf), our own
# cache; and when none works, builds CPython once from the Debian source package into
# ${CONJURE_CACHE:-~/.cache/conjure}/python-X.Y (about 2 minutes on 2 cores).
set -euo pipefail
want="${1:-3.13}"
cache="${CONJURE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/conjure}"
prefix="$cache/python-$want"

works() {
  [ -x "$1" ] && "$1" -c "import sys, ssl, sqlite3, lzma, ctypes; \
sys.exit(0 if sys.version.startswith('$want.') else 1)" >/dev/null 2>&1
}

candidates=("$(command -v "python$want" || true)" "$prefix/bin/python$want")
if command -v pyenv >/dev/null 2>&1; then
  candidates+=("$(pyenv root)"/versions/"$want"*/bin/"python$want")
fi
candidates+=(
  "$HOME"/.pyenv/versions/"$want"*/bin/"python$want"
  "$HOME"/.local/share/uv/python/cpython-"$want"*/bin/"python$want"
  "$HOME"/.asdf/installs/python/"$want"*/bin/"python$want"
  /usr/local/bin/"python$want" /usr/bin/"python$want"
)
for candidate in "${candidates[@]}"; do
  if [ -n "$candidate" ] && works "$candidate"; then
    echo "$candidate"
    exit 0
  fi
done

# None found: build it from the distribution's source package, once.
if ! command -v apt-get >/dev/null 2>&1; then
  echo "find_python: no Python $want found and no apt-get to build one; install Python $want" >&2
  exit 1
fi
echo "find_python: building Python $want into $prefix (one time, a few minutes)" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
codename="$( . /etc/os-release; echo "${VERSION_CODENAME:-bookworm}")"
src_list=/etc/apt/sources.list.d/conjure-python-src.list
# Debian releases before trixie do not carry python3.13; its source builds on them.
echo "deb-src http://deb.debian.org/debian trixie main" | $sudo tee "$src_list" >/dev/null
{
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq build-essential dpkg-dev pkg-config libssl-dev libsqlite3-dev \
    liblzma-dev libffi-dev zlib1g-dev libbz2-dev libreadline-dev libncurses-dev uuid-dev
} >&2
(cd "$work" && apt-get source --download-only "python$want" >&2)
tarball="$(ls "$work"/python"$want"_*.orig.tar.* | head -n1)"
tar -xf "$tarball" -C "$work"
srcdir="$(find "$work" -maxdepth 1 -type d -name 'Python-*' | head -n1)"
(
  cd "$srcdir"
  ./configure --prefix="$prefix" --with-ensurepip=install >/dev/null
  make -j"$(nproc)" >/dev/null
  make install >/dev/null
) >&2
$sudo rm -f "$src_list"
[ "$codename" = trixie ] || $sudo apt-get update -qq >&2 || true
works "$prefix/bin/python$want" || { echo "find_python: build failed" >&2; exit 1; }
echo "$prefix/bin/python$want"
