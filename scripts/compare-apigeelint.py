#!/usr/bin/env python3
"""Compares `preflow check` with apigeelint on apigeelint's own fixture bundles.

For every apigeelint finding of a rule that flags a real problem (naming and style rules
are left out, see STYLE), looks for a `preflow check` finding in the same file within two
lines, and prints a table per rule. Also times both per bundle.

Usage: scripts/compare-apigeelint.py [--profile edge|x] [--preflow BIN] [BUNDLES_DIR]
       scripts/compare-apigeelint.py --time-corpus [--preflow BIN]

`--time-corpus` instead times `preflow check` (one process per bundle) on the 242 real
corpus bundles outside apigeelint's fixtures and lists every error it reports.

apigeelint 2.85.1 is installed with npm under $CARGO_TARGET_DIR/apigeelint (default
target/apigeelint) the first time; it is never committed. BUNDLES_DIR defaults to
$PREFLOW_SHARED/apigee-corpus/bundles/apigee__apigeelint.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APIGEELINT_VERSION = "2.85.1"

# apigeelint rules about naming, style, size, code style of resources or its own
# preferences rather than a problem Apigee or the running proxy has.
STYLE = {
    "BN003": "cache coherence heuristics",
    "BN006": "policy count",
    "BN007": "bundle size",
    "BN009": "several statistics collectors",
    "BN014": "two policies with identical configuration (maintainability)",
    "CC001": "literal conditions (style)",
    "CC003": "condition length",
    "CC004": "condition complexity",
    "FE001": "custom feature hygiene",
    "FR002": "DefaultFaultRule style",
    "FR003": "single fault rule style",
    "PD004": "proxy name attribute vs file name",
    "PO034-faultrules": "an empty <FaultRules/> in a policy, as Edge's UI writes it (no effect)",
    "PD006-empty": "an empty <Request/> in PostClientFlow (apigeelint warns; it does nothing)",
    "PO012": "an AssignTo naming no message is redundant (no effect)",
    "ST003": "advice to guard a JSON-reading step with a content-type condition",
    "ST004": "advice to guard an XML-reading step with a content-type condition",
    "ST005": "advice to guard a form-reading step with a content-type condition",
    "ST006": "advice to guard JSONThreatProtection with a content-type condition",
    "ST007": "advice to guard XMLThreatProtection with a content-type condition",
    "PD005": "VirtualHost on Apigee X (platform preference)",
    "PO006": "policy name attribute vs file name",
    "PO007": "policy naming conventions",
    "PO008": "DisplayName vs name",
    "PO013": "JavaScript lint (jshint)",
    "PO025": "JavaScript lint (eslint)",
    "ST002": "step element hygiene",
    "TD002": "prefer target servers over URLs",
    "TD003": "target name attribute vs file name",
}


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def ensure_apigeelint(target_dir: Path) -> Path:
    home = target_dir / "apigeelint"
    cli = home / "node_modules" / "apigeelint" / "cli.js"
    if not cli.exists():
        home.mkdir(parents=True, exist_ok=True)
        r = run(["npm", "install", "--no-audit", "--no-fund", f"apigeelint@{APIGEELINT_VERSION}"], cwd=home)
        if r.returncode != 0:
            sys.exit(f"npm install apigeelint failed:\n{r.stderr}")
    return cli


def bundles(root: Path):
    out = []
    for dirpath, dirnames, _ in os.walk(root):
        for d in dirnames:
            if d in ("apiproxy", "sharedflowbundle"):
                out.append(Path(dirpath) / d)
    return sorted(out)


def time_corpus(root: Path, preflow: str):
    found = [b for b in bundles(root) if "apigee__apigeelint" not in b.parts]
    errors = []
    total = 0.0
    for b in found:
        t0 = time.perf_counter()
        r = run([preflow, "check", "--format", "json", str(b)])
        total += time.perf_counter() - t0
        for f in json.loads(r.stdout)["findings"]:
            if f["severity"] == "error":
                errors.append(f"{f['file']}:{f['line']}: [{f['rule']}] {f['message']}")
    print(f"{len(found)} bundles, {1000 * total / len(found):.2f} ms per bundle (one process each), {len(errors)} errors")
    for e in errors:
        print(e)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", choices=["edge", "x"], default="edge")
    ap.add_argument("--preflow", default=None)
    ap.add_argument("--time-corpus", action="store_true")
    ap.add_argument("bundles", nargs="?", default=None)
    args = ap.parse_args()
    shared = Path(os.environ.get("PREFLOW_SHARED", ROOT.parent / "shared"))
    bundle_root = Path(args.bundles or shared / "apigee-corpus/bundles/apigee__apigeelint")
    target_dir = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    preflow = args.preflow or str(target_dir / "debug" / "preflow")
    if args.time_corpus:
        time_corpus(shared / "apigee-corpus/bundles", preflow)
        return
    cli = ensure_apigeelint(target_dir)
    lint_profile = "apigeex" if args.profile == "x" else "apigee"

    # (file, line) of preflow findings; apigeelint findings by rule.
    ours = defaultdict(list)
    theirs = defaultdict(list)
    times = {"apigeelint": 0.0, "preflow": 0.0}
    found = bundles(bundle_root)
    for b in found:
        t0 = time.perf_counter()
        r = run(["node", str(cli), "-s", str(b), "-f", "json.js", "--norc", "--profile", lint_profile])
        times["apigeelint"] += time.perf_counter() - t0
        try:
            report = json.loads(r.stdout)
        except json.JSONDecodeError:
            print(f"apigeelint gave no JSON for {b}: {r.stderr[:200]}", file=sys.stderr)
            report = []
        for f in report:
            for m in f.get("messages", []):
                if m.get("severity", 0) >= 1 and m.get("ruleId"):
                    rule = m["ruleId"]
                    # apigeelint itself warns (1) about an empty <Request/> in
                    # PostClientFlow and errs (2) when it holds steps.
                    if rule == "PD006" and m.get("severity") == 1 and m.get("message", "").startswith("Request is not"):
                        rule = "PD006-empty"
                    # Edge's UI writes an empty <FaultRules/> into every policy.
                    if rule == "PO034" and "<FaultRules> is not allowed" in m.get("message", ""):
                        rule = "PO034-faultrules"
                    theirs[rule].append((os.path.realpath(f["filePath"]), int(m.get("line") or 0), m.get("message", "")))
        t0 = time.perf_counter()
        r = run([preflow, "check", "--format", "json", "--profile", args.profile, str(b)])
        times["preflow"] += time.perf_counter() - t0
        for f in json.loads(r.stdout)["findings"]:
            ours[os.path.realpath(f["file"])].append((f["line"], f["rule"]))

    # apigeelint's line 0 is about the whole file: any finding in the file matches.
    def matched(file, line):
        return [rule for (l, rule) in ours.get(file, []) if line == 0 or abs(l - line) <= 2]

    print(f"{len(found)} bundles under {bundle_root}, profile {args.profile}")
    print(f"time per bundle: apigeelint {1000 * times['apigeelint'] / len(found):.1f} ms, "
          f"preflow {1000 * times['preflow'] / len(found):.1f} ms (one process per bundle)\n")
    print("| apigeelint rule | findings | preflow same file ±2 lines | % | preflow rules there |")
    print("|---|---:|---:|---:|---|")
    total = hit = 0
    misses = []
    for rule in sorted(theirs):
        if rule in STYLE:
            continue
        items = theirs[rule]
        n = len(items)
        rules = defaultdict(int)
        h = 0
        for file, line, msg in items:
            m = matched(file, line)
            if m:
                h += 1
                for x in set(m):
                    rules[x] += 1
            else:
                misses.append((rule, file, line, msg))
        total += n
        hit += h
        top = ", ".join(f"{k} {v}" for k, v in sorted(rules.items(), key=lambda kv: -kv[1])[:4])
        print(f"| {rule} | {n} | {h} | {100 * h / n:.0f} | {top} |")
    print(f"| **all** | {total} | {hit} | {100 * hit / max(total, 1):.1f} | |\n")
    print("Left out as naming or style: " + ", ".join(f"{r} ({len(theirs[r])})" for r in sorted(theirs) if r in STYLE))
    if "-v" in sys.argv or os.environ.get("VERBOSE"):
        for rule, file, line, msg in misses:
            print(f"MISS {rule} {file}:{line} {msg[:120]}")


if __name__ == "__main__":
    main()
