#!/usr/bin/env bash
# The real package clients `make clients` drives (clients/README.md): dnf with its
# download plugin (Debian's dnf runs as root into a private installroot), apt-get (already
# on Debian; apt-ftparchive is a fixture tool), pip (Debian's python3-pip, run --isolated),
# skopeo, npm (nodejs), curl and aria2c for ranges. Says what it installs (apt-get).
set -euo pipefail
missing=()
command -v dnf >/dev/null || missing+=(dnf)
[ -e /usr/lib/python3/dist-packages/dnf-plugins/download.py ] || missing+=(dnf-plugins-core)
command -v rpm >/dev/null || missing+=(rpm)
/usr/bin/python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
command -v skopeo >/dev/null || missing+=(skopeo)
command -v npm >/dev/null || missing+=(npm)
command -v curl >/dev/null || missing+=(curl)
command -v aria2c >/dev/null || missing+=(aria2)
if [ ${#missing[@]} -gt 0 ]; then
  echo "make clients: installing the package clients it drives: ${missing[*]} (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o DPkg::Lock::Timeout=300 "${missing[@]}" >/dev/null
fi
