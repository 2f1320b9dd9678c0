//! The hash a presented token is looked up by (issue 21, item 3): the stored key of every
//! access token, refresh token and authorization code, computed once per request.
//!
//! - `token_hash/sha256`: `TokenHash::of`, SHA-256 of the token value (the `sha2` crate,
//!   which uses the SHA extensions when the CPU has them).
//! - `token_hash/blake3_keyed`: BLAKE3 keyed with a 32-byte per-deployment secret.
//!
//! Inputs: a default preflow token (32 random bytes, base64url: 43 characters) and, to
//! see the trend, a 128-character token (as imported or JWT-like values are).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use preflow_oauth::TokenHash;

fn token_hash(c: &mut Criterion) {
    let key = [7u8; 32];
    let keyed = blake3::Hasher::new_keyed(&key);
    let mut group = c.benchmark_group("token_hash");
    for len in [43usize, 128] {
        let token: String = "Zm9vYmFyYmF6cXV4MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6"
            .chars()
            .cycle()
            .take(len)
            .collect();
        group.bench_function(BenchmarkId::new("sha256", len), |b| {
            b.iter(|| TokenHash::of(black_box(token.as_bytes())))
        });
        group.bench_function(BenchmarkId::new("blake3_keyed", len), |b| {
            b.iter(|| {
                let mut h = keyed.clone();
                h.update(black_box(token.as_bytes()));
                *h.finalize().as_bytes()
            })
        });
        group.bench_function(BenchmarkId::new("blake3_keyed_hash", len), |b| {
            b.iter(|| *blake3::keyed_hash(black_box(&key), black_box(token.as_bytes())).as_bytes())
        });
    }
    group.finish();
}

criterion_group!(benches, token_hash);
criterion_main!(benches);
