//! Arbitrary bytes as each kind of bundle file (endpoint, policy, shared flow, descriptor),
//! and split in two as an endpoint plus a policy: loading, linting and rendering the
//! diagnostics never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use preflow::{LoadOptions, lint, load_files};

const PATHS: &[&str] = &[
    "apiproxy/proxies/default.xml",
    "apiproxy/targets/default.xml",
    "apiproxy/policies/P.xml",
    "apiproxy/fuzz.xml",
    "fuzz/sharedflowbundle/sharedflows/default.xml",
];

fuzz_target!(|data: &[u8]| {
    let options = LoadOptions::default();
    for path in PATHS {
        let loaded = load_files([(*path, data)], &options);
        for d in lint(&loaded.bundles).iter().chain(&loaded.diagnostics) {
            let _ = d.render();
        }
    }
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len() / 2);
    let (endpoint, policy) = data.split_at(split);
    let files = [
        ("apiproxy/proxies/default.xml", endpoint),
        (
            "apiproxy/policies/P.xml",
            policy.get(1..).unwrap_or_default(),
        ),
    ];
    let loaded = load_files(files, &options);
    let _ = lint(&loaded.bundles);
});
