#!/usr/bin/env bash
# Installs the Debian packages some tests drive, only those whose command is missing. Called by
# `make test`; needs root (or sudo) and the apt mirror; without them the tests that need a tool skip.
#   chromium               the HTML report browser test (tests/unit/eval/test_eval_report_browser.py)
#   podman runc mmdebstrap the container image test (tests/integration/test_container_image.py)
#   prometheus             the scrape test of `lmf serve` (tests/integration/test_prometheus.py)
set -euo pipefail
missing=()
for tool in chromium podman runc mmdebstrap prometheus; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ "${#missing[@]}" -eq 0 ] && exit 0
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "install_test_tools.sh: not root and no sudo; tests that need ${missing[*]} will be skipped" >&2
        exit 0
    fi
fi
echo "installing ${missing[*]} for the tests that drive them (apt-get, once)" >&2
$SUDO apt-get update -qq || { echo "install_test_tools.sh: apt-get update failed; those tests will be skipped" >&2; exit 0; }
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null \
    || echo "install_test_tools.sh: apt-get install ${missing[*]} failed; those tests will be skipped" >&2
