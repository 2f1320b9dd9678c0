#!/usr/bin/env bash
# Load test (not part of CI): wrk with 50 connections for 20 s against /v1/test/hello of
# the seed scenario with a valid token, then against a plain hyper server answering the
# same body. Both run on this machine, on loopback. SpikeArrest stays in the flow but is
# raised out of the way: a copy of the seed with the highest rate, and the Apigee X token
# bucket (`--spike-arrest x`), whose burst absorbs requests that arrive together.
#
#   ./scripts/load-test.sh            # needs wrk (Debian: apt-get install -y wrk)
#   CONNECTIONS=50 DURATION=20s THREADS=2 ./scripts/load-test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS=${CONNECTIONS:-50}
DURATION=${DURATION:-20s}
THREADS=${THREADS:-2}
GATEWAY_ADDR=127.0.0.1:18181
PLAIN_ADDR=127.0.0.1:18182

command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install -y wrk)"; exit 1; }
cargo build --release -q -p preflow-cli --bin preflow --example plain_hyper

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

cp -r examples/seed "$work/seed"
sed -i 's|<Rate>10ps</Rate>|<Rate>4000000000ps</Rate>|' "$work/seed/hello-api/apiproxy/policies/SpikeArrest.xml"

PREFLOW_LOG=warn target/release/preflow serve "$work/seed" --listen "$GATEWAY_ADDR" --spike-arrest x --state-dir "$work" >"$work/gateway.out" 2>"$work/gateway.err" &
pids+=($!)
target/release/examples/plain_hyper "$PLAIN_ADDR" >"$work/plain.out" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
  grep -q listening "$work/gateway.out" 2>/dev/null && grep -q listening "$work/plain.out" 2>/dev/null && break
  sleep 0.1
done

token=$(curl -s -u demo-client:demo-secret -d grant_type=client_credentials \
  "http://$GATEWAY_ADDR/oauth/OAuthToken" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
body=$(curl -s -H "Authorization: Bearer $token" "http://$GATEWAY_ADDR/v1/test/hello")
[ "$body" = "Hello world from IFlow" ] || { echo "gateway check failed: $body"; exit 1; }

run() {
  echo "== $1"
  shift
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@" | tee "$work/last"
  rps=$(awk '/^Requests\/sec/ {print $2}' "$work/last")
  p99=$(awk '$1 == "99%" {print $2}' "$work/last")
  non2xx=$(awk '/Non-2xx/ {print $5}' "$work/last")
  echo "-> requests/s $rps, p99 $p99, non-2xx ${non2xx:-0}"
  echo "$rps" >>"$work/rps"
}
run "preflow serve: /v1/test/hello with a bearer token" \
  -H "Authorization: Bearer $token" "http://$GATEWAY_ADDR/v1/test/hello"
run "plain hyper: the same body" "http://$PLAIN_ADDR/v1/test/hello"
awk 'NR==1 {g=$1} NR==2 {p=$1} END {printf "preflow / plain hyper = %.2f\n", g/p}' "$work/rps"
