#!/usr/bin/env bash
# Install Debian's headless-capable Chromium for the UI test (tests/integration/test_ui_trigger.py).
# Idempotent: does nothing when /usr/bin/chromium exists. Needs root (apt-get); otherwise it says
# what to run and exits non-zero. Playwright drives this browser; its own browser download is not used.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    echo "chromium already installed: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "chromium is missing and this is not root; run: sudo apt-get update && sudo apt-get install -y chromium" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
echo "chromium installed: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
