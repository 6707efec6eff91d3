#!/usr/bin/env bash
# What the tests talk to besides PostgreSQL: curl, redis-server, nginx, gpg, ostree, perf, pgbouncer
# (Debian packages, installed with apt-get when missing) and Azurite (Azure Blob Storage's
# emulator, from npm, under .dev/node). Says what it installs before installing it.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v curl >/dev/null || missing+=(curl)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v gpg >/dev/null || missing+=(gnupg)
command -v ostree >/dev/null || missing+=(ostree)  # builds the objects the ostree check reads
# perf, which the bench's profiles run below Python (tests/unit/test_bench_native.py).
command -v perf >/dev/null || missing+=(linux-perf)
# A transaction-mode pooler in front of PostgreSQL (tests/test_pgbouncer_e2e.py).
command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
if [ ! -x .dev/node/node_modules/.bin/azurite-blob ]; then
  command -v npm >/dev/null || missing+=(npm)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "make test: installing Debian packages the tests need: ${missing[*]} (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ! -x .dev/node/node_modules/.bin/azurite-blob ]; then
  echo "make test: installing Azurite 3 (npm) under .dev/node for the Azure storage tests"
  mkdir -p .dev/node
  npm install --prefix .dev/node --silent --no-audit --no-fund azurite@3 >/dev/null
fi
