//! The simulator's deterministic hashing (splitmix64): the pseudo-random
//! numbers behind generated orgs, ids, timestamps and latency jitter.
//!
//! Invariant: pure functions of their arguments, so the same seed always
//! gives the same org, ids and delays.

/// splitmix64 finalizer: a cheap, well-mixed hash of a 64-bit value.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Hash of (seed, n, salt): one independent random stream per purpose.
pub(crate) fn draw(seed: u64, n: u64, salt: u64) -> u64 {
    mix(mix(seed ^ salt.wrapping_mul(0xD6E8_FEB8_6659_FD93)) ^ n)
}
