#!/usr/bin/env bash
# Make a PostgreSQL server reachable for development and tests, and say where it is.
#
# 1. the machine's server on 127.0.0.1:5432, if it answers (starting the Debian cluster if
#    it is installed but stopped);
# 2. otherwise a private cluster under .dev/pg on the first free port from 5433, created
#    with Debian's postgresql binaries (installed with apt-get when missing).
# Writes .dev/db.env (PGHOST, PGPORT, PGUSER) for the Makefile and the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .dev

write_env() {
  printf 'PGHOST=%s\nPGPORT=%s\nPGUSER=%s\n' "$1" "$2" "$3" > .dev/db.env
  echo "PostgreSQL: $1:$2 (user $3)"
}

# CONTENT_ASGI_PRIVATE_PG=1 skips the machine's server (to exercise the fallback).
if [ -z "${CONTENT_ASGI_PRIVATE_PG:-}" ] && pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  write_env 127.0.0.1 5432 postgres; exit 0
fi
if [ -z "${CONTENT_ASGI_PRIVATE_PG:-}" ] && command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ] && [ -n "$(ls /etc/postgresql 2>/dev/null)" ]; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start 2>/dev/null || true
  for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p 5432 && { write_env 127.0.0.1 5432 postgres; exit 0; }
    sleep 1
  done
fi

# A private cluster owned by this checkout.
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
if [ -z "$bindir" ]; then
  echo "Installing PostgreSQL from Debian packages..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
fi
data=$PWD/.dev/pg
run() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
if [ ! -f "$data/PG_VERSION" ]; then
  mkdir -p "$data"; [ "$(id -u)" = 0 ] && chown postgres "$data" && chmod 700 "$data"
  [ "$(id -u)" = 0 ] && chmod o+x "$PWD" "$PWD/.dev"
  run "$bindir/initdb -D '$data' -U postgres --auth=trust >/dev/null"
fi
# Its port: the one it runs on (line 4 of postmaster.pid), else the first from 5433 on that
# nothing answers on: other checkouts' private clusters may hold 5433 already.
port=""
if run "$bindir/pg_ctl status -D '$data'" >/dev/null 2>&1; then
  port=$(sed -n 4p "$data/postmaster.pid")
else
  for candidate in $(seq 5433 5462); do
    pg_isready -q -h 127.0.0.1 -p "$candidate" || [ $? -ne 2 ] || { port=$candidate; break; }
  done
  [ -n "$port" ] || { echo "No free port in 5433-5462 for a private PostgreSQL" >&2; exit 1; }
  run "$bindir/pg_ctl -D '$data' -l '$data/log' -o '-p $port -k /tmp -c listen_addresses=127.0.0.1' -w start >/dev/null"
fi
write_env 127.0.0.1 "$port" postgres
