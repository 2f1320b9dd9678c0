//! Integration tests of preflow; the tests live in `tests/`.
