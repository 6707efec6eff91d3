#!/usr/bin/env bash
# The Debian packages the Pulp plugins of the `plugins` extra need before pip installs them:
# pulp-ostree's PyGObject and pycairo build from source (libgirepository1.0-dev,
# libcairo2-dev) and import libostree at django.setup() (gir1.2-ostree-1.0); pulp-rpm's
# createrepo_c reads /usr/lib/rpm/rpmrc (rpm-common). Says what it installs.
set -euo pipefail
missing=()
for pkg in libgirepository1.0-dev libcairo2-dev gir1.2-ostree-1.0 rpm-common pkg-config; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "make venv: installing Debian packages the Pulp plugins build against: ${missing[*]} (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
