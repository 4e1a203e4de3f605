#!/usr/bin/env bash
# Create .venv-tools/ with checkov, pinned. checkov pins older packaging, networkx, cachetools and
# importlib_metadata than Airflow needs, so it lives in its own venv and never touches .venv.
# Idempotent; tests call .venv-tools/bin/checkov. Usage: scripts/tools.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-tools"
python="${PYTHON:-python3}"
checkov_pin="checkov==3.3.30"
stamp="$venv/.installed-$checkov_pin"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
if [ ! -f "$stamp" ]; then
  echo "Installing $checkov_pin into .venv-tools ..." >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$checkov_pin"
  rm -f "$venv"/.installed-*
  touch "$stamp"
fi
