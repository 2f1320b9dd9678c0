//! Arbitrary bytes as the files of an SAP API Management export (descriptor, proxy and
//! target endpoints, policy), split at NUL bytes: loading, linting and rendering the
//! diagnostics never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use preflow::{LoadOptions, lint, load_files};

const PATHS: &[&str] = &[
    "APIProxy/fuzz.xml",
    "APIProxy/APIProxyEndPoint/default.xml",
    "APIProxy/APITargetEndPoint/default.xml",
    "APIProxy/Policy/P.xml",
];

fuzz_target!(|data: &[u8]| {
    let options = LoadOptions::default();
    // Each piece alone as every kind of file.
    for path in PATHS {
        let loaded = load_files([(*path, data)], &options);
        for d in lint(&loaded.bundles).iter().chain(&loaded.diagnostics) {
            let _ = d.render();
        }
    }
    // Pieces between NULs as the files of one export.
    let files: Vec<(&str, &[u8])> = PATHS.iter().copied().zip(data.split(|&b| b == 0)).collect();
    let loaded = load_files(files, &options);
    for d in lint(&loaded.bundles).iter().chain(&loaded.diagnostics) {
        let _ = d.render();
    }
});
