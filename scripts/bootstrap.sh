#!/usr/bin/env bash
# Create .venv in the checkout and install Leviathan with the pinned versions in constraints.txt.
# Idempotent and quick when nothing changed (a stamp file records what was installed).
# Usage: scripts/bootstrap.sh [EXTRAS]     e.g. scripts/bootstrap.sh test
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extras="${1:-}"
venv="$root/.venv"
python="${PYTHON:-python3}"

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: Leviathan needs Python 3.11 or newer as '$python' (set PYTHON=/path/to/python3.11)" >&2
  exit 2
fi
if ! command -v git >/dev/null 2>&1; then
  echo "error: git is required (apt-get install git)" >&2
  exit 2
fi
# bubblewrap: every recipe step on the local backend runs in its sandbox (leviathan_lib/worker/sandbox.py).
# Without it recipes do not run (the cycle stops with sandbox_unavailable), so a failed install is not fatal.
bwrap="${LEVIATHAN_BWRAP:-/usr/bin/bwrap}"
if [ ! -x "$bwrap" ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing bubblewrap (the recipe sandbox) ..." >&2
  if ! { command -v apt-get >/dev/null 2>&1 && { [ -z "$sudo" ] || command -v sudo >/dev/null 2>&1; } \
         && $sudo apt-get update -qq \
         && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bubblewrap \
              >/dev/null; }; then
    echo "warning: missing: $bwrap (Debian/Ubuntu package 'bubblewrap'); it could not be installed here." >&2
    echo "warning: recipes will not run until it is: cycles stop with sandbox_unavailable." >&2
  fi
fi
# libseccomp: the sandbox's seccomp filter is compiled with it (pyseccomp); without it recipes do not run either.
if ! ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2'; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing libseccomp2 (the recipe sandbox's seccomp filter) ..." >&2
  if ! { command -v apt-get >/dev/null 2>&1 && { [ -z "$sudo" ] || command -v sudo >/dev/null 2>&1; } \
         && $sudo apt-get update -qq \
         && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libseccomp2 \
              >/dev/null; }; then
    echo "warning: missing: libseccomp2; recipes will not run until it is (sandbox_unavailable)." >&2
  fi
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
digest="$(cat "$root/pyproject.toml" "$root/constraints.txt" | sha256sum | cut -c1-16)"
stamp="$venv/.installed-$digest-${extras:-base}"
if [ ! -f "$stamp" ]; then
  echo "Installing Leviathan and Apache Airflow into .venv (pinned by constraints.txt) ..." >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
  spec="$root"
  [ -n "$extras" ] && spec="$root[$extras]"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -c "$root/constraints.txt" -e "$spec"
  rm -f "$venv"/.installed-*
  touch "$stamp"
fi
# pip's editable build (setuptools' get_requires_for_build_editable) writes leviathan.egg-info into the
# checkout; the installed metadata is .venv's dist-info. Left here, it is a second copy of the package's
# metadata for any Python that has the checkout on sys.path (`python -m ...` started here): Airflow then
# loads the plugin twice ("already registered", a plugin import error in the UI). Removed on every run.
rm -rf "$root/leviathan.egg-info"
