//! Integration tests of the plugin host against real components, built from `plugins/` by the first test that
//! needs them: every bundled plugin through its adapter, the hostile test plugins, and quarantine.

// Tests may unwrap: a panic is the failure report there.
#![allow(clippy::unwrap_used)]

mod adapters;
mod cache;
mod capabilities;
mod discovery;
mod hostile;
mod hostile_formatter;
mod quarantine;
mod reload;
mod shared;
mod support;
