#!/usr/bin/env bash
# Installs the Debian packages the end-to-end tests and benchmarks drive (nginx, wrk, and chromium
# for the dashboard tests, which Playwright launches from /usr/bin: no browser download) when missing.
# Needs root (as on CI); without root it says what to install and leaves the tests to skip.
set -euo pipefail
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "system-deps: please install: ${missing[*]} (apt-get install -y ${missing[*]})" >&2
    exit 0
fi
echo "system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq "${missing[@]}" >/dev/null
