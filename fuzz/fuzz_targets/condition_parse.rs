//! The condition parser never panics, and whatever it accepts prints in canonical form and
//! parses back to the same tree, in both dialects.
#![no_main]

use libfuzzer_sys::fuzz_target;
use preflow_condition::{Dialect, ParseOptions, parse_with};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for dialect in [Dialect::Edge, Dialect::ApigeeX] {
        let options = ParseOptions {
            dialect,
            ..ParseOptions::default()
        };
        let Ok(cond) = parse_with(text, &options) else {
            continue;
        };
        let printed = cond.to_string();
        for again in [Dialect::Edge, Dialect::ApigeeX] {
            let options = ParseOptions {
                dialect: again,
                // The canonical form adds spaces and parentheses: it may be longer and nest
                // up to about twice as deep.
                max_len: usize::MAX,
                max_depth: ParseOptions::DEPTH_CEILING,
            };
            match parse_with(&printed, &options) {
                Ok(back) => assert_eq!(
                    back.without_spans(),
                    cond.without_spans(),
                    "{text:?} printed as {printed:?} parses differently in {again:?}"
                ),
                Err(e) => {
                    panic!("{text:?} printed as {printed:?} does not parse in {again:?}: {e}")
                }
            }
        }
    }
});
