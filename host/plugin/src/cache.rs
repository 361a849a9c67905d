//! The precompile cache: compiled components kept on disk, keyed by sha256 of the `.wasm` and the engine's
//! compatibility hash (wasmtime version, target, compiler settings), so a restart or reload of an unchanged plugin
//! skips Cranelift.
//!
//! Each entry is `crc32(artifact) ‖ artifact` (CRC-32 little-endian: it catches torn writes and bit rot at memory
//! speed; it is no defence against a writer, see below); an entry that is unreadable, fails its checksum or is
//! refused by wasmtime is a miss and is rewritten. The directory must be the operator's (like wasmtime's own cache): a file that
//! passes the checksum is trusted as code this host produced. It must never be the plugin directory, and nothing
//! precompiled is ever loaded from there.

use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The extension of cache entries; `v2` entries carry a CRC-32 (older `.cwasm` entries carried a SHA-256 and are
/// simply never looked up again).
const ENTRY_EXTENSION: &str = "v2.cwasm";

/// Where a compiled component came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from a valid cache entry.
    Hit,
    /// Compiled (no entry, or a corrupt or incompatible one) and stored.
    Miss,
    /// Compiled; no cache is configured, or it may not be used for this plugin directory.
    Disabled,
}

/// A cache directory for one engine.
#[derive(Debug)]
pub(crate) struct Cache {
    dir: PathBuf,
    /// Hex digest of the engine's compatibility hash, part of every key.
    engine_key: String,
}

/// Feeds `Hash` input into SHA-256, giving a digest that is stable across processes (unlike `DefaultHasher`).
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        0
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl Cache {
    pub(crate) fn new(dir: PathBuf, engine: &Engine) -> Self {
        let mut hasher = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex(&hasher.0.finalize()[..8]);
        Cache { dir, engine_key }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the cache may serve plugins of `plugin_dir`: not when it lies inside it.
    pub(crate) fn usable_for(&self, plugin_dir: &Path) -> bool {
        let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
        !canon(&self.dir).starts_with(canon(plugin_dir))
    }

    fn entry(&self, wasm_sha256: &[u8; 32]) -> PathBuf {
        self.dir.join(format!("{}-{}.{ENTRY_EXTENSION}", hex(wasm_sha256), self.engine_key))
    }

    /// The component of `wasm`, from the cache when a valid entry exists, else compiled and stored. A failure to
    /// store is logged, never an error: the cache only saves time.
    pub(crate) fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
        wasm_sha256: &[u8; 32],
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let entry = self.entry(wasm_sha256);
        if let Some(component) = self.read(engine, &entry) {
            return Ok((component, CacheOutcome::Hit));
        }
        let artifact = engine.precompile_component(wasm)?;
        let component = deserialize(engine, &artifact)?;
        if let Err(e) = self.write(&entry, &artifact) {
            tracing::warn!(cache = %self.dir.display(), "cannot store a precompiled plugin: {e}");
        }
        Ok((component, CacheOutcome::Miss))
    }

    fn read(&self, engine: &Engine, entry: &Path) -> Option<Component> {
        let bytes = std::fs::read(entry).ok()?;
        let valid = bytes.split_first_chunk::<4>().is_some_and(|(sum, artifact)| {
            !artifact.is_empty() && u32::from_le_bytes(*sum) == crc32fast::hash(artifact)
        });
        if !valid {
            tracing::warn!(entry = %entry.display(), "corrupt precompile cache entry; recompiling");
            return None;
        }
        match deserialize(engine, bytes.get(4..).unwrap_or_default()) {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(entry = %entry.display(), "unusable precompile cache entry, recompiling: {e:#}");
                None
            }
        }
    }

    fn write(&self, entry: &Path, artifact: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        // Write then rename, so a concurrent reader never sees half an entry.
        let tmp = entry.with_extension(format!("tmp{}", std::process::id()));
        let mut bytes = Vec::with_capacity(4 + artifact.len());
        bytes.extend_from_slice(&crc32fast::hash(artifact).to_le_bytes());
        bytes.extend_from_slice(artifact);
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, entry).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `artifact` is either what `precompile_component` just produced, or a cache entry whose checksum
    // matches what this host wrote into the operator's cache directory (see the module docs). wasmtime also
    // checks the artifact's header against this engine's version and settings.
    unsafe { Component::deserialize(engine, artifact) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
    }
}
