//! Arbitrary text as an apps file: parsing, checking, building the registry and writing
//! the file back never panic, and what is written back parses to the same file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use preflow_cli::apps::AppsFile;
use preflow_oauth::PasswordHashCost;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut file) = AppsFile::parse(text) else {
        return;
    };
    let cost = PasswordHashCost::insecure_for_tests();
    if file.validate().is_err() || file.hash_secrets(cost).is_err() {
        return;
    }
    let _ = file.to_registry(cost);
    if let Ok(written) = file.to_toml() {
        let again = AppsFile::parse(&written).expect("a written apps file parses");
        assert_eq!(again, file, "the apps file round-trips");
    }
});
