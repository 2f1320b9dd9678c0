#!/usr/bin/env bash
# The project's tests: `cargo test --workspace`, with the Python clients of the
# end-to-end suite (requests-oauthlib, Authlib, requests, httpx with HTTP/2) in a virtual
# environment under target/.
# Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/e2e-venv
if ! "$venv/bin/python" -c 'import requests_oauthlib, authlib, requests, httpx, h2' 2>/dev/null; then
  echo "scripts/test.sh: installing requests-oauthlib, authlib, requests and httpx[http2] into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check requests-oauthlib authlib requests 'httpx[http2]'
fi
export PREFLOW_E2E_PYTHON="$PWD/$venv/bin/python"
# The state tests start their own redis-server processes and Redis Clusters.
for tool in redis-server redis-cli; do
  command -v "$tool" >/dev/null 2>&1 || { echo "scripts/test.sh: $tool is missing (apt-get install redis-server)"; exit 1; }
done
cargo test --workspace "$@"
