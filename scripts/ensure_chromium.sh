#!/usr/bin/env bash
# Make sure a headless Chromium is installed for the HTML report's test (tests/report.rs):
# Debian's `chromium` package, installed with apt-get when it is missing.
set -euo pipefail
for b in "${MIGRATE_CHROMIUM:-}" chromium chromium-browser google-chrome; do
  if [ -n "$b" ] && command -v "$b" >/dev/null; then exit 0; fi
done
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
echo "==> Chromium is not installed (the HTML report's test renders the page in it): installing it with apt-get"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium
