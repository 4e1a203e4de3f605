#!/usr/bin/env bash
# Make sure Redis answers on 127.0.0.1:6379: the broker of the CeleryExecutor end-to-end test
# (tests/e2e/test_celery.py). Installs it (Debian/Ubuntu: apt-get install redis-server, as root or via sudo)
# and starts it without persistence when it is missing or down; otherwise says exactly what is missing, exit 2.
set -uo pipefail

answers() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
fail() { echo "error: $1" >&2; exit 2; }

command -v redis-cli >/dev/null 2>&1 && answers && exit 0
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || fail "Redis is not running on 127.0.0.1:6379, and installing it needs root or sudo"
  sudo="sudo"
fi
if ! command -v redis-server >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || fail "Redis is not installed and this is no apt system: install Redis >= 6 \
listening on 127.0.0.1:6379 without a password"
  echo "Installing Redis (Debian package redis-server) ..." >&2
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends redis-server >/dev/null || fail "cannot install Redis (apt-get install redis-server)"
fi
echo "Starting Redis on 127.0.0.1:6379 ..." >&2
redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null \
  || fail "redis-server does not start (is port 6379 taken by something else?)"
for _ in $(seq 1 20); do
  answers && exit 0
  sleep 0.5
done
fail "Redis was started but does not answer PING on 127.0.0.1:6379"
