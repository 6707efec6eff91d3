#!/usr/bin/env bash
# Install the load generator and the reference server the benchmarks (and the conformance
# stack's proxy) use: wrk, nginx, taskset, and the conformance stack's own redis-server
# (with --native also perf)
# (Debian packages, with apt-get when missing). Says what it installs before installing it.
set -euo pipefail
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v taskset >/dev/null || missing+=(util-linux)
# --native (make bench): perf, which samples the servers below Python (bench/native.py).
if [ "${1:-}" = "--native" ]; then
  command -v perf >/dev/null || missing+=(linux-perf)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages for the benchmarks / local Pulp stack: ${missing[*]} (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
