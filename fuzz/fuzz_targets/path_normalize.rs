//! Arbitrary request paths: normalisation never panics, and what it accepts is canonical
//! (absolute, no `//`, no dot segment, no raw backslash or control character) and a fixed
//! point (normalising it again returns it unchanged; borrowed when it holds no `%`).
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use preflow::path::normalize;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(normal) = normalize(path) else {
        return;
    };
    assert!(normal.starts_with('/'), "{normal:?}");
    assert!(!normal.contains("//"), "{normal:?}");
    assert!(
        !normal.bytes().any(|b| b == b'\\' || b < 0x20 || b == 0x7f),
        "{normal:?}"
    );
    assert!(
        !normal.split('/').any(|s| s == "." || s == ".."),
        "{normal:?}"
    );
    match normalize(&normal) {
        Ok(Cow::Borrowed(again)) => assert_eq!(again, normal.as_ref()),
        // Kept percent-encodings are re-checked, so such paths come back owned.
        Ok(Cow::Owned(again)) if normal.contains('%') => assert_eq!(again, normal.as_ref()),
        other => panic!("{normal:?} is not a fixed point: {other:?}"),
    }
});
