#!/usr/bin/env bash
# Installs Debian's chromium for the HTML report browser test (tests/unit/eval/test_eval_report_browser.py),
# only when it is missing. Called by `make test`; needs root (or sudo) and the apt mirror.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "install_chromium.sh: not root and no sudo; the browser test will be skipped" >&2
        exit 0
    fi
fi
echo "installing chromium for the HTML report test (apt-get, once)" >&2
$SUDO apt-get update -qq || { echo "install_chromium.sh: apt-get update failed; the browser test will be skipped" >&2; exit 0; }
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null \
    || echo "install_chromium.sh: apt-get install chromium failed; the browser test will be skipped" >&2
