#!/usr/bin/env python3
"""Writes docs/rules.md, the rule catalogue of `preflow check`, from the catalogue in
crates/preflow/src/lint/rules.rs and the fixture bundles in tests/data/lint (the example
of each rule is the difference between its bad and its good bundle)."""

import difflib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
src = (ROOT / "crates/preflow/src/lint/rules.rs").read_text()
rules = re.findall(
    r'rule\(\s*"([A-Z]+[0-9]+)",\s*(Error|Warning),\s*(true|false),\s*"((?:[^"\\]|\\.)*)",\s*"((?:[^"\\]|\\.)*)",\s*\)',
    src,
)
families = {
    "LOAD": "Loading",
    "SCH": "Policy and endpoint schemas",
    "XML": "XML",
    "REF": "References (warnings; errors under `--strict`)",
    "TLS": "Target TLS",
    "TGT": "Targets",
    "FLOW": "Reachability and flows",
    "COND": "Conditions",
    "POL": "Policy configuration",
    "DEP": "Deprecated features",
    "PRF": "Platform profiles (`--profile edge|x`)",
}


def files(d: Path):
    return {p.relative_to(d).as_posix(): p for p in sorted(d.rglob("*")) if p.is_file()}


out = [
    "# `preflow check` rule catalogue",
    "",
    "Every finding of `preflow check` names one of these rules. Ids are stable. Each rule",
    "has a default severity; `--strict` turns the REF rules into errors (as Apigee's import",
    "treats them), `--deny RULE` makes a rule an error, `--allow RULE` silences it, and a",
    "config file (`--config FILE`, else `.preflow-check.toml` in the current folder) sets",
    "them too:",
    "",
    "```toml",
    'profile = "x"          # or "edge": report features of the other platform',
    "strict = true",
    "[rules]",
    'TLS003 = "error"       # "error", "warning" or "off"',
    'POL004 = "off"',
    "```",
    "",
    "Flags win over the file. Exit codes: 0 when no finding is an error, 1 when one is, 2 for",
    "a usage problem (no path, an unknown rule, an unreadable config or environment file).",
    "`--format json` prints the findings as one JSON document, `--format sarif` as SARIF",
    "2.1.0 with every rule below in `tool.driver.rules`.",
    "",
    "Each example is the change that fixes the finding: the difference between the rule's",
    "`bad` and `good` bundles in `tests/data/lint/<RULE>/`, which a test checks.",
    "",
    "This file is written by `scripts/rules-doc.py`.",
    "",
]
family = None
for rid, sev, strict, summary, why in rules:
    fam = re.match(r"[A-Z]+", rid).group(0)
    if fam != family:
        family = fam
        out += [f"## {families.get(fam, fam)}", ""]
    sev_text = sev.lower() + (" (error under `--strict`)" if strict == "true" else "")
    out += [f"### {rid}", "", f"**{sev_text}**. {summary}", "", f"Why: {why}", ""]
    d = ROOT / "tests/data/lint" / rid
    args = (d / "args").read_text().strip() if (d / "args").exists() else ""
    if d.is_dir():
        bad, good = files(d / "bad"), files(d / "good")
        diff = []
        for name in sorted(set(bad) | set(good)):
            a = bad[name].read_text().splitlines() if name in bad else []
            b = good[name].read_text().splitlines() if name in good else []
            if a != b:
                diff += list(difflib.unified_diff(a, b, f"bad/{name}", f"good/{name}", n=1, lineterm=""))
        if args:
            out += [f"Checked with `preflow check {args}`.", ""]
        if diff:
            out += ["```diff", *diff[:40], "```", ""]
print("\n".join(out), file=open(ROOT / "docs/rules.md", "w"))
print(f"{len(rules)} rules")
