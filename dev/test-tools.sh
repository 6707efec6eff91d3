#!/usr/bin/env bash
# What the tests talk to besides PostgreSQL: curl, redis-server, nginx, gpg (from Debian) and
# Azurite (Azure Blob Storage's emulator, from npm, under .dev/node).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v curl >/dev/null || missing+=(curl)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v gpg >/dev/null || missing+=(gnupg)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ! -x .dev/node/node_modules/.bin/azurite-blob ] && command -v npm >/dev/null; then
  mkdir -p .dev/node
  npm install --prefix .dev/node --silent --no-audit --no-fund azurite@3 >/dev/null
fi
