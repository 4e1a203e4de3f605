#!/usr/bin/env bash
# README command 1: install (first time), then run the embedded demo on real Airflow.
# Options are passed to `leviathan demo` (--reset, --port N, --exit, --dir D).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/bootstrap.sh"
LEVIATHAN_HOME="$root" exec "$root/.venv/bin/leviathan" demo "$@"
