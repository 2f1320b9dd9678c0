//! Arbitrary text as an environment file: parsing and checking never panic, and an error
//! at a place in the file names a line and column inside the text.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use preflow_cli::environment::{EnvError, Environment};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // PEM paths resolve under a folder that does not exist: reading them fails cleanly.
    let path = Path::new("/nonexistent-preflow-fuzz/environment.toml");
    match Environment::parse(path, text) {
        Ok(mut env) => {
            let _ = env.host_mut("default");
        }
        Err(EnvError::At { line, column, .. }) => {
            let lines = text.split('\n').count();
            assert!(line >= 1 && line <= lines, "line {line} of {lines}");
            assert!(column >= 1, "column {column}");
        }
        Err(_) => {}
    }
});
