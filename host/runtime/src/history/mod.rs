//! Recorded history (`storage.history`, the policy lab's record): every check outcome, anomaly sample and log-match
//! count per interval of every service, kept in the state database in compact chunks
//! ([`aegis_core::history::codec`]) and read back by [`HistoryReader`] for `aegis-host replay`.
//!
//! The probe path only pushes into a per-service bounded buffer ([`ServiceRecorder`], `recorder.rs`); a writer
//! thread of its own (`writer.rs`) drains the buffers about every second, appends to each series' open chunk in one
//! transaction and enforces retention; `schema.rs` is the table both sides share. Nothing here decides anything about supervision, and a store that refuses writes costs the
//! probes nothing: what cannot be written is dropped and counted.

mod reader;
mod recorder;
mod schema;
mod writer;

#[cfg(test)]
mod tests;

pub use self::reader::HistoryReader;
pub use self::recorder::{BUFFER, LOG_INTERVAL_MS, MAX_DETAIL, Recorder, ServiceRecorder};
pub use self::schema::Kind;
pub use self::writer::{CHUNK, FLUSH_EVERY};
