//! Zips: arbitrary bytes read as an archive, and well-formed archives whose entry names
//! and contents come from the input (Apigee and SAP layouts, odd names such as `..`,
//! absolute paths and backslashes): loading never panics.
#![no_main]

use std::io::{Cursor, Write as _};

use libfuzzer_sys::fuzz_target;
use preflow::{LoadOptions, lint, load_zip};
use zip::write::SimpleFileOptions;

const PREFIXES: &[&str] = &["apiproxy/", "APIProxy/", "sharedflowbundle/", ""];

fuzz_target!(|data: &[u8]| {
    let options = LoadOptions::default();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let loaded = load_zip("fuzz.zip", Cursor::new(rest), &options);
        let _ = lint(&loaded.bundles);
        return;
    }
    // Entries as `name NUL content NUL name NUL content …`, names under a layout prefix.
    let prefix = PREFIXES
        .get(usize::from(mode >> 1) % PREFIXES.len())
        .copied()
        .unwrap_or("");
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let stored = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut pieces = rest.split(|&b| b == 0);
    while let (Some(name), Some(content)) = (pieces.next(), pieces.next()) {
        let name = format!("{prefix}{}", String::from_utf8_lossy(name));
        if writer.start_file(name, stored).is_err() || writer.write_all(content).is_err() {
            return;
        }
    }
    let Ok(archive) = writer.finish() else {
        return;
    };
    let loaded = load_zip("fuzz.zip", Cursor::new(archive.into_inner()), &options);
    for d in lint(&loaded.bundles).iter().chain(&loaded.diagnostics) {
        let _ = d.render();
    }
});
