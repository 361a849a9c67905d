//! The one integration-test binary of `aegis-core` (STYLE §8): property tests of the invariants and a multi-threaded
//! stress test, both against the public API only.

// Tests may unwrap: a panic is the failure report there.
#![allow(clippy::unwrap_used)]

mod props;
mod stress;
