#!/usr/bin/env bash
# Load test (not part of CI): the cost of TLS on both sides of the gateway. One
# `preflow serve` (release build) serves a back-end proxy (`/back`, answers 22 bytes from
# its flow) and two front proxies that forward to it: `/plain/…` to http://127.0.0.1:PLAIN/back
# and `/tls/…` to https://localhost:TLS/back, verified against the seed's example CA (a
# trust store in the environment file). wrk (HTTP/1.1, keep-alive) then drives
#   1. http://127.0.0.1:PLAIN/plain/x   (plain listener, plain target)
#   2. https://localhost:TLS/tls/x      (HTTPS listener, HTTPS target)
# and prints requests per second and p99 of both. No policy runs: only the transport
# differs. Everything runs on this machine, on loopback.
#
#   ./scripts/load-test-tls.sh            # needs wrk (Debian: apt-get install -y wrk)
#   CONNECTIONS=50 DURATION=20s THREADS=2 ./scripts/load-test-tls.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS=${CONNECTIONS:-50}
DURATION=${DURATION:-20s}
THREADS=${THREADS:-2}
PLAIN_PORT=${PLAIN_PORT:-18183}
TLS_PORT=${TLS_PORT:-18184}

command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install -y wrk)"; exit 1; }
cargo build --release -q -p preflow-cli --bin preflow

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

proxy() { # NAME BASE URL|-
  local dir="$work/bundles/$1/apiproxy"
  mkdir -p "$dir/proxies" "$dir/policies"
  echo "<APIProxy name=\"$1\"/>" >"$dir/$1.xml"
  if [ "$3" = "-" ]; then
    cat >"$dir/policies/AM-Hello.xml" <<'XML'
<AssignMessage name="AM-Hello">
  <Set><Payload contentType="text/plain">Hello world from back</Payload><StatusCode>200</StatusCode></Set>
  <AssignTo createNew="false" transport="http" type="response"/>
</AssignMessage>
XML
    cat >"$dir/proxies/default.xml" <<XML
<ProxyEndpoint name="default">
  <PreFlow name="PreFlow"><Request/><Response><Step><Name>AM-Hello</Name></Step></Response></PreFlow>
  <HTTPProxyConnection><BasePath>$2</BasePath></HTTPProxyConnection>
  <RouteRule name="none"/>
</ProxyEndpoint>
XML
  else
    mkdir -p "$dir/targets"
    cat >"$dir/proxies/default.xml" <<XML
<ProxyEndpoint name="default">
  <HTTPProxyConnection><BasePath>$2</BasePath></HTTPProxyConnection>
  <RouteRule name="r"><TargetEndpoint>default</TargetEndpoint></RouteRule>
</ProxyEndpoint>
XML
    cat >"$dir/targets/default.xml" <<XML
<TargetEndpoint name="default">
  <HTTPTargetConnection><URL>$3</URL></HTTPTargetConnection>
</TargetEndpoint>
XML
  fi
}
proxy back /back -
proxy front-plain /plain "http://127.0.0.1:$PLAIN_PORT/back"
proxy front-tls /tls "https://localhost:$TLS_PORT/back"
seed_tls="$PWD/examples/seed/tls"
cat >"$work/environment.toml" <<TOML
[[virtual_host]]
name = "default"
listen = "127.0.0.1:$PLAIN_PORT"

[[virtual_host]]
name = "secure"
listen = "127.0.0.1:$TLS_PORT"
hosts = ["localhost"]
tls = { cert = "$seed_tls/server.pem", key = "$seed_tls/server-key.pem" }

[[truststore]]
name = "example-ca"
ca = "$seed_tls/ca.pem"

[[target_server]]
name = "back"
host = "localhost"
port = $TLS_PORT
tls = { truststore = "example-ca" }
TOML

PREFLOW_LOG=warn target/release/preflow serve "$work/bundles" --env "$work/environment.toml" \
  >"$work/gateway.out" 2>"$work/gateway.err" &
pids+=($!)
for _ in $(seq 50); do
  grep -q "secure listening" "$work/gateway.out" 2>/dev/null && break
  sleep 0.1
done

check() {
  local body
  body=$(curl -s --cacert "$seed_tls/ca.pem" --resolve "localhost:$TLS_PORT:127.0.0.1" "$1")
  [ "$body" = "Hello world from back" ] || { echo "check of $1 failed: $body"; cat "$work/gateway.err"; exit 1; }
}
check "http://127.0.0.1:$PLAIN_PORT/plain/x"
check "https://localhost:$TLS_PORT/tls/x"

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
run "plain HTTP listener, plain HTTP target" "http://127.0.0.1:$PLAIN_PORT/plain/x"
# wrk does not verify the listener's certificate; it connects by name (SNI localhost).
run "HTTPS listener, HTTPS target (verified)" "https://localhost:$TLS_PORT/tls/x"
awk 'NR==1 {p=$1} NR==2 {t=$1} END {printf "HTTPS both sides / plain = %.2f\n", t/p}' "$work/rps"
