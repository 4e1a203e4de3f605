#!/usr/bin/env bash
# Make sure the tests' PostgreSQL answers (tests/metadata_db.py): user postgres on 127.0.0.1:5432, no password.
# Installs (Debian/Ubuntu: apt-get install postgresql, as root or via sudo) and starts it when it is missing
# or down; otherwise says exactly what is missing and exits 2. Nothing to do with LEVIATHAN_TEST_DB=sqlite.
# With LEVIATHAN_TEST_PG (user[:password]@host:port) set the server is somebody else's: only checked.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="$root/.venv/bin/python"   # psycopg2 comes with the test extras (scripts/bootstrap.sh test)

[ "${LEVIATHAN_TEST_DB:-postgresql}" = "sqlite" ] && exit 0
server="${LEVIATHAN_TEST_PG:-postgres@127.0.0.1:5432}"

answers() {  # prints the server's error, if any, to stderr
  "$python" - "$server" <<'EOF'
import sys
import psycopg2
try:
    psycopg2.connect(f"postgresql://{sys.argv[1]}/postgres", connect_timeout=3).close()
except psycopg2.OperationalError as exc:
    sys.exit(" ".join(str(exc).split()))
EOF
}

fail() {
  echo "error: $1" >&2
  echo "       (or run the suite on SQLite: LEVIATHAN_TEST_DB=sqlite scripts/test.sh)" >&2
  exit 2
}

answers 2>/dev/null && exit 0
[ -n "${LEVIATHAN_TEST_PG:-}" ] && { answers; fail "PostgreSQL at LEVIATHAN_TEST_PG=$server does not answer"; }

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || fail "PostgreSQL is not running on 127.0.0.1:5432, and starting it needs root or sudo"
  sudo="sudo"
fi
installed_here=0
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || fail "PostgreSQL is not installed and this is no apt system: install \
PostgreSQL >= 13, listening on 127.0.0.1:5432, user postgres allowed without a password from 127.0.0.1"
  echo "Installing PostgreSQL (Debian package postgresql) ..." >&2
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends postgresql >/dev/null || fail "cannot install PostgreSQL (apt-get install postgresql)"
  installed_here=1
fi
version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)"
[ -n "$version" ] || fail "PostgreSQL is installed but has no cluster under /etc/postgresql (pg_createcluster)"
if [ "$installed_here" -eq 1 ]; then
  # A cluster this script just created: let user postgres in from 127.0.0.1 without a password (tests only).
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  $sudo sed -i '1i host all postgres 127.0.0.1/32 trust  # added by leviathan scripts/postgres.sh' "$hba" \
    || fail "cannot edit $hba"
fi
echo "Starting PostgreSQL $version ..." >&2
$sudo pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null \
  || $sudo pg_ctlcluster --skip-systemctl-redirect "$version" main reload >/dev/null 2>&1 || true
for _ in $(seq 1 30); do
  answers 2>/dev/null && exit 0
  sleep 1
done
reason="$(answers 2>&1)"
fail "PostgreSQL $version does not let user postgres in on 127.0.0.1:5432 ($reason); it needs a line
       'host all postgres 127.0.0.1/32 trust' in /etc/postgresql/$version/main/pg_hba.conf, or a password
       given as LEVIATHAN_TEST_PG=postgres:PASSWORD@127.0.0.1:5432"
