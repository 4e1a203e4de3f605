#!/usr/bin/env bash
# README command 2: install (first time, with the test extras), lint, then run the whole test suite.
# The tests' Airflow metadata DB is PostgreSQL (a database per run on 127.0.0.1:5432, installed and started
# here if missing), the Celery test's broker Redis (127.0.0.1:6379, likewise); LEVIATHAN_TEST_DB=sqlite runs
# them on SQLite. Extra arguments go to pytest (e.g. scripts/test.sh -k guardrails).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/bootstrap.sh" test || exit $?
"$root/scripts/tools.sh" || exit $?   # checkov, in its own venv (tests/deploy/test_docs_commands.py runs it)
"$root/scripts/postgres.sh" || exit $?   # the tests' metadata DB (LEVIATHAN_TEST_DB=sqlite: not needed)
"$root/scripts/redis.sh" || exit $?   # the Celery broker of tests/e2e/test_celery.py (127.0.0.1:6379)
# promtool (Debian package "prometheus") checks the Spider's /metrics output in tests/spider/test_app.py.
if ! command -v promtool >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing promtool (Debian package prometheus) ..." >&2
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends prometheus >/dev/null || { echo "error: cannot install promtool" >&2; exit 2; }
fi
# chromium (Debian package) is the browser the Playwright tests drive (tests/spider/test_browser*.py);
# Playwright never downloads a browser build here.
if [ ! -x /usr/bin/chromium ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing chromium (Debian package) for the browser tests ..." >&2
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends chromium >/dev/null || { echo "error: cannot install chromium" >&2; exit 2; }
fi
cd "$root"
.venv/bin/ruff check . || exit $?
.venv/bin/lint-imports || exit $?   # the package's layers and boundaries (pyproject.toml)
.venv/bin/mypy || exit $?   # the package's types ([tool.mypy] in pyproject.toml; the core is strict)
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests (exit 5); that is a failure here" >&2
  exit 1
fi
exit "$rc"
