#!/usr/bin/env bash
# Installs what building and testing krust needs: Debian packages and PyPI packages.
# Idempotent: installs only what is missing. Sourced by server.sh and test.sh.
set -euo pipefail

need_debs=()
for pkg in "$@"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_debs+=("$pkg")
done
if [ ${#need_debs[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_debs[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_debs[@]}" >/dev/null
fi
