#!/usr/bin/env bash
# What conformance/fixtures/ builds the plugins' local upstreams with (make parity-plugins),
# all offline at run time: rpmbuild (Debian `rpm`) for a tiny RPM, apt-ftparchive
# (`apt-utils`, pinned to the installed apt's version: the bookworm-security candidate
# would upgrade apt itself) for an APT repository, `docker-registry` (CNCF distribution)
# as the container upstream and `skopeo` to push an OCI image into it, `ostree` for an
# OSTree repository, `zck` (`zchunk`) for a zchunk file, `gem` (Debian `ruby`) to build
# a gem and its RubyGems index. dpkg-deb (dpkg), npm (nodejs) and nginx
# (dev/bench-tools.sh) are already there; createrepo_c and ansible-galaxy come into the
# virtualenv with the plugins.
# Says what it installs before installing it (apt-get).
set -euo pipefail
missing=()
command -v rpmbuild >/dev/null || missing+=(rpm)
if ! command -v apt-ftparchive >/dev/null; then
  apt_version=$(dpkg-query -W -f='${Version}' apt)
  missing+=("apt-utils=$apt_version")
fi
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v skopeo >/dev/null || missing+=(skopeo)
command -v ostree >/dev/null || missing+=(ostree)
command -v zck >/dev/null || missing+=(zchunk)
command -v dpkg-deb >/dev/null || missing+=(dpkg)
command -v npm >/dev/null || missing+=(npm)
command -v gem >/dev/null || missing+=(ruby)
if [ ${#missing[@]} -gt 0 ]; then
  echo "make parity-plugins: installing Debian packages the plugin fixtures are built with: ${missing[*]} (apt-get)"
  apt-get update -qq
  # The fixtures start their own registry on loopback; the packaged service (htpasswd auth
  # on :5000, all interfaces) is never used.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
