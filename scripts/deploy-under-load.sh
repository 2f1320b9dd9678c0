#!/usr/bin/env bash
# Deploys under load (not part of CI; the test suite has its own in serve_deploy.rs).
# One `preflow serve` (release build) serves a back-end proxy (`/back`) and a front proxy
# (`/front`) that forwards to it over HTTP and stamps `X-Revision` on the response. While
# wrk drives `/front` (keep-alive connections), the script deploys a changed front proxy
# every second, alternating between a zip posted to the admin API and SIGHUP after
# editing the files, and deploys one broken zip (refused). At the end it prints wrk's
# request count with its non-2xx and socket errors, and the revisions deployed.
#
#   ./scripts/deploy-under-load.sh         # needs wrk and curl (Debian: apt-get install -y wrk curl)
#   DURATION=20 CONNECTIONS=50 ./scripts/deploy-under-load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS=${CONNECTIONS:-50}
DURATION=${DURATION:-10}
THREADS=${THREADS:-2}
PORT=${PORT:-18185}
ADMIN_PORT=${ADMIN_PORT:-18186}
export PREFLOW_ADMIN_TOKEN=deploy-under-load-admin-token

for tool in wrk curl; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed (apt-get install -y $tool)"; exit 1; }
done
cargo build --release -q -p preflow-cli --bin preflow

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

back() {
  local dir="$work/bundles/back/apiproxy"
  mkdir -p "$dir/proxies" "$dir/policies"
  echo '<APIProxy name="back"/>' >"$dir/back.xml"
  cat >"$dir/policies/AM-Hello.xml" <<'XML'
<AssignMessage name="AM-Hello">
  <Set><Payload contentType="text/plain">Hello world from back</Payload><StatusCode>200</StatusCode></Set>
  <AssignTo createNew="false" transport="http" type="response"/>
</AssignMessage>
XML
  cat >"$dir/proxies/default.xml" <<'XML'
<ProxyEndpoint name="default">
  <PreFlow name="PreFlow"><Request/><Response><Step><Name>AM-Hello</Name></Step></Response></PreFlow>
  <HTTPProxyConnection><BasePath>/back</BasePath></HTTPProxyConnection>
  <RouteRule name="none"/>
</ProxyEndpoint>
XML
}

front() { # ROOT REVISION: the front proxy's files under ROOT/apiproxy
  local dir="$1/apiproxy"
  mkdir -p "$dir/proxies" "$dir/targets" "$dir/policies"
  echo '<APIProxy name="front"/>' >"$dir/front.xml"
  cat >"$dir/policies/AM-Stamp.xml" <<XML
<AssignMessage name="AM-Stamp">
  <Set><Headers><Header name="X-Revision">$2</Header></Headers></Set>
  <AssignTo createNew="false" type="response"/>
</AssignMessage>
XML
  cat >"$dir/proxies/default.xml" <<'XML'
<ProxyEndpoint name="default">
  <PostFlow name="PostFlow"><Request/><Response><Step><Name>AM-Stamp</Name></Step></Response></PostFlow>
  <HTTPProxyConnection><BasePath>/front</BasePath></HTTPProxyConnection>
  <RouteRule name="r"><TargetEndpoint>default</TargetEndpoint></RouteRule>
</ProxyEndpoint>
XML
  cat >"$dir/targets/default.xml" <<XML
<TargetEndpoint name="default">
  <HTTPTargetConnection><URL>http://127.0.0.1:$PORT/back</URL></HTTPTargetConnection>
</TargetEndpoint>
XML
}

back
front "$work/bundles/front" disk-0
cp examples/seed/apps.toml "$work/apps.toml"
PREFLOW_LOG=info target/release/preflow serve "$work/bundles" --apps "$work/apps.toml" \
  --listen "127.0.0.1:$PORT" --admin "127.0.0.1:$ADMIN_PORT" \
  >"$work/gateway.out" 2>"$work/gateway.err" &
gateway=$!
pids+=("$gateway")
for _ in $(seq 100); do
  grep -q "admin listening" "$work/gateway.out" 2>/dev/null && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$PORT/front/x" >/dev/null || { echo "the gateway does not answer"; cat "$work/gateway.err"; exit 1; }

upload() { # ZIP
  curl -s -o "$work/deploy.json" -w '%{http_code}' -X POST \
    -H "Authorization: Bearer $PREFLOW_ADMIN_TOKEN" -H 'Content-Type: application/zip' \
    --data-binary "@$1" "http://127.0.0.1:$ADMIN_PORT/admin/deployments?name=$(basename "$1")"
}

wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$PORT/front/x" >"$work/wrk" &
load=$!
uploads=0
reloads=0
for i in $(seq 1 $((DURATION - 1))); do
  sleep 1
  if [ $((i % 2)) -eq 1 ]; then
    rm -rf "$work/zip-$i"
    front "$work/zip-$i" "upload-$i"
    (cd "$work/zip-$i" && python3 -m zipfile -c "$work/front-$i.zip" apiproxy)
    code=$(upload "$work/front-$i.zip")
    [ "$code" = 201 ] || { echo "upload $i answered $code: $(cat "$work/deploy.json")"; exit 1; }
    uploads=$((uploads + 1))
  else
    front "$work/bundles/front" "disk-$i"
    kill -HUP "$gateway"
    reloads=$((reloads + 1))
  fi
  if [ "$i" -eq 2 ]; then
    printf 'not a zip' >"$work/broken.zip"
    code=$(upload "$work/broken.zip")
    [ "$code" = 422 ] || { echo "a broken zip answered $code"; exit 1; }
  fi
done
wait "$load"
cat "$work/wrk"
requests=$(awk '/requests in/ {print $1}' "$work/wrk")
non2xx=$(awk '/Non-2xx/ {print $5}' "$work/wrk")
errors=$(awk '/Socket errors/ {print $0}' "$work/wrk")
revisions=$(curl -s -H "Authorization: Bearer $PREFLOW_ADMIN_TOKEN" "http://127.0.0.1:$ADMIN_PORT/admin/deployments" |
  python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["active"])')
echo "-> $requests requests, non-2xx ${non2xx:-0}, ${errors:-no socket errors}; $uploads uploads and $reloads SIGHUP reloads, active revision $revisions"
[ -z "${non2xx:-}" ] && [ -z "${errors:-}" ]
