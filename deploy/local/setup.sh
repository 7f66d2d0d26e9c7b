#!/usr/bin/env bash
# Prepares a Debian 12 (bookworm) machine to run and test Sluice: installs Bun (through npm),
# PostgreSQL 15 with the hll extension, Redis, nginx, wrk and Chromium where missing, starts them if they are
# down, and installs the JavaScript dependencies from the lockfile. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf 'setup: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

PG_VERSION=15
BUN_VERSION=1.4.5

missing=()
command -v node >/dev/null || missing+=(nodejs npm)
[ -x "/usr/lib/postgresql/$PG_VERSION/bin/postgres" ] || missing+=("postgresql-$PG_VERSION")
[ -f "/usr/share/postgresql/$PG_VERSION/extension/hll.control" ] || missing+=("postgresql-$PG_VERSION-hll")
command -v redis-server >/dev/null || missing+=(redis-server)
command -v wrk >/dev/null || missing+=(wrk)        # bun run bench
[ -x /usr/sbin/nginx ] || missing+=(nginx)       # the nginx test
[ -x /usr/bin/chromium ] || missing+=(chromium)  # the browser test (playwright-core drives it)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  as_root apt-get update -q
  for pkg in "postgresql-$PG_VERSION" "postgresql-$PG_VERSION-hll"; do
    if [[ " ${missing[*]} " == *" $pkg "* ]] && ! apt-cache show "$pkg" >/dev/null 2>&1; then
      say "$pkg is not in this system's package archive (this script targets Debian 12): install PostgreSQL $PG_VERSION with the hll extension yourself, then run it again"
      exit 1
    fi
  done
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

if ! command -v bun >/dev/null; then
  say "installing bun $BUN_VERSION with npm"
  as_root npm install -g "bun@$BUN_VERSION"
fi

# PostgreSQL: start the cluster if it is down (no systemd in containers).
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  say "starting PostgreSQL $PG_VERSION"
  as_root pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
fi
# Local development connects as postgres over 127.0.0.1 without a password. A fresh Debian
# install asks for one there, so trust loopback connections (this machine only).
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
  hba="/etc/postgresql/$PG_VERSION/main/pg_hba.conf"
  say "letting local connections to 127.0.0.1 in without a password ($hba)"
  as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  as_root pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" main reload
  sleep 1
fi

# Redis: start it if it is down, without persistence (the compose stack runs it with AOF).
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  say "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.2; done
fi

say "installing dependencies from bun.lock"
bun install --frozen-lockfile
say "ready: bun $(bun --version), $(psql -h 127.0.0.1 -U postgres -Atc 'show server_version'), redis $(redis-cli info server | sed -n 's/^redis_version://p' | tr -d '\r')"
