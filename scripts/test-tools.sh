#!/usr/bin/env bash
# The image tools the archive tests build real images with (umoci, skopeo): Debian packages,
# no daemon. Installed only when missing.
set -euo pipefail
if command -v umoci >/dev/null 2>&1 && command -v skopeo >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
echo "test-tools: installing umoci and skopeo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends umoci skopeo >/dev/null
