#!/usr/bin/env bash
# Regenerate the Leviathan view's screenshots in docs/images/view-*.png (docs/spider.md shows them).
# They are taken by the browser tests (tests/e2e/test_browser.py: Playwright driving Debian's chromium
# against a real API server and real cycles of the demo target), so every picture is of a checked state.
# Extra arguments go to pytest. Needs the test extras (scripts/test.sh installs them) and PostgreSQL
# (scripts/postgres.sh), or LEVIATHAN_TEST_DB=sqlite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
mkdir -p docs/images
LEVIATHAN_SCREENSHOTS="$root/docs/images" exec .venv/bin/python -m pytest tests/e2e/test_browser.py -q \
  -p no:cacheprovider "$@"
