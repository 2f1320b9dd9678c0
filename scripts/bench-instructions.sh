#!/usr/bin/env bash
# Instructions per call of one function inside a criterion benchmark (not part of CI).
#
# On a shared machine a benchmark's time moves by tens of percent from one run to the
# next; the instructions it executes do not. This runs one benchmark of the
# preflow-benches crate under valgrind's callgrind and prints the inclusive instruction
# count of FUNCTION divided by the number of times it was called, so two builds can be
# compared by a figure that does not depend on the load.
#
#   ./scripts/bench-instructions.sh BENCH FILTER FUNCTION
#   ./scripts/bench-instructions.sh request request_preflow/preflow request::one
#
# FUNCTION is the demangled name of a function that is not inlined (the request bench's
# `one` is marked so). BIN=FILE runs that build of the bench binary instead of building
# it (e.g. a copy kept from before a change). Caveats: valgrind runs SHA-256 in software
# (about 3,500 instructions per 64-byte block where the CPU's SHA extensions take one
# instruction per round), and an atomic read-modify-write counts as one instruction though
# it costs about 20 cycles. Needs valgrind (apt-get install -y valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ne 3 ]; then
  sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
bench=$1 filter=$2 function=$3
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install -y valgrind" >&2; exit 1; }
bin=${BIN:-}
if [ -z "$bin" ]; then
  bin=$(cargo bench -p preflow-benches --bench "$bench" --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "bench" in m["target"]["kind"]:
        print(m["executable"])')
fi
[ -x "$bin" ] || { echo "no bench binary for $bench" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Criterion writes its reports under the working directory: keep them out of the tree.
(cd "$out" && valgrind --tool=callgrind --callgrind-out-file="$out/cg" \
  "$bin" --bench --warm-up-time 1 --measurement-time 2 "$filter" >"$out/log" 2>&1) ||
  { tail -20 "$out/log" >&2; exit 1; }
python3 - "$out/cg" "$function" <<'EOF'
import re, sys

path, wanted = sys.argv[1], sys.argv[2]
names, inclusive, calls = {}, 0, 0
target = None  # the callee of the current call line, when it is FUNCTION
pending = False
with open(path) as f:
    for line in f:
        m = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line)
        if m:
            if m.group(2):
                names[m.group(1)] = m.group(2).strip()
            if line.startswith("cfn="):
                target = names.get(m.group(1), "") == wanted
            continue
        if line.startswith("calls="):
            pending = bool(target)
            if pending:
                calls += int(line.split("=")[1].split()[0])
            continue
        if pending:
            # The cost line after calls= is the inclusive cost of those calls.
            parts = line.split()
            if len(parts) >= 2:
                inclusive += int(parts[1])
            pending = False
if calls == 0:
    sys.exit(f"{wanted} was never called (inlined, or a different name?)")
print(f"{wanted}: {inclusive / calls:,.0f} instructions per call over {calls:,} calls")
EOF
