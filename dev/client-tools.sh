#!/usr/bin/env bash
# The real package clients `make clients` drives (clients/README.md): dnf with its
# download plugin (Debian's dnf runs as root into a private installroot), apt-get (already
# on Debian; apt-ftparchive is a fixture tool), pip (Debian's python3-pip, run --isolated),
# skopeo, npm (nodejs), gem (ruby), ostree, curl, aria2c and zckdl (`zchunk`) for ranges; ansible-galaxy
# comes into the virtualenv with pulp-ansible (ansible-core), nothing to install.
# Only for the full run (not `--slice ci`, see clients/run.py CI_PLUGINS):
# podman (rootful, vfs storage: the engine's own packages come with it, crun and conmon)
# and Maven with Debian's maven-dependency-plugin (libmaven-dependency-plugin-java and
# its Java libraries under /usr/share/maven-repo, which mvn reads as a file:// plugin
# repository). Takes make clients' arguments; says what it installs (apt-get); installs
# nothing already there.
set -euo pipefail
slice=full
while [ $# -gt 0 ]; do
  if [ "$1" = "--slice" ] && [ $# -gt 1 ]; then slice=$2; shift; fi
  shift
done
missing=()
command -v dnf >/dev/null || missing+=(dnf)
[ -e /usr/lib/python3/dist-packages/dnf-plugins/download.py ] || missing+=(dnf-plugins-core)
command -v rpm >/dev/null || missing+=(rpm)
/usr/bin/python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
command -v skopeo >/dev/null || missing+=(skopeo)
command -v npm >/dev/null || missing+=(npm)
command -v gem >/dev/null || missing+=(ruby)
command -v ostree >/dev/null || missing+=(ostree)
command -v curl >/dev/null || missing+=(curl)
command -v aria2c >/dev/null || missing+=(aria2)
command -v zckdl >/dev/null || missing+=(zchunk)
if [ "$slice" != ci ]; then
  command -v podman >/dev/null || missing+=(podman)
  command -v mvn >/dev/null || missing+=(maven)
  [ -e /usr/share/maven-repo/org/apache/maven/plugins/maven-dependency-plugin/3.5.0 ] \
    || missing+=(libmaven-dependency-plugin-java)
  # One of the plugin's Debian POMs names junit:junit:4.x, which no dependency installs.
  [ -e /usr/share/maven-repo/junit/junit/4.x ] || missing+=(junit4)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "make clients: installing the package clients it drives: ${missing[*]} (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o DPkg::Lock::Timeout=300 "${missing[@]}" >/dev/null
fi
