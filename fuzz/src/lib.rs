//! Fuzz targets for every input Aegis takes from outside: one function per target, taking the fuzzer's bytes.
//! The libFuzzer binaries in `fuzz_targets/` (nightly, `cargo fuzz`) and the stable replay of the committed corpus
//! (`tests/corpus.rs`, part of `cargo test --workspace`) call the same functions, so a crash once found and fixed
//! stays fixed without nightly. A target panics when a property fails; it must not panic on any other input.
//!
//! Each target drives the public entry points the host itself uses, never a copy of their logic.

mod admin;
mod alert;
mod config;
mod input;
mod logs;
mod plugin_answers;
mod trip_window;

pub use admin::admin;
pub use alert::alert;
pub use config::config;
pub use logs::logs;
pub use plugin_answers::plugin_answers;
pub use trip_window::trip_window;

/// A target: the fuzzer's bytes in, a panic if a property fails.
pub type Target = fn(&[u8]);

/// Every target by its name (the name of its `fuzz_targets/` binary and its `corpus/` directory).
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config),
    ("logs", logs),
    ("admin", admin),
    ("alert", alert),
    ("plugin_answers", plugin_answers),
    ("trip_window", trip_window),
];
