#!/usr/bin/env bash
# Install the load generator and the reference server the benchmarks (and the conformance
# stack's proxy) use: wrk, nginx, taskset, and the conformance stack's own redis-server
# (Debian packages, with apt-get when missing). Says what it installs before installing it.
# With --native (make bench) also perf, which samples the servers below Python
# (bench/native.py); perf is optional, so failing to install it only warns.
set -euo pipefail
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v taskset >/dev/null || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages for the benchmarks / local Pulp stack: ${missing[*]} (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ "${1:-}" = "--native" ] && ! command -v perf >/dev/null; then
  echo "installing perf for the benchmarks' profiles below Python: linux-perf (apt-get)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
         apt-get install -y -qq linux-perf >/dev/null; }; then
    echo "warning: linux-perf could not be installed; the profiles will say 'perf: ... not" \
         "found' and the benchmarks run without them" >&2
  fi
fi
