//! The optional manifest beside a plugin (`<name>.manifest.yaml`) and capabilities. A manifest names the plugin's
//! kind and version, default config, and the capabilities it asks for; the operator grants capabilities per plugin
//! ([`crate::PluginHost::grant`]). A plugin asking for anything not granted fails to load, naming what is missing.
//! Without a manifest a plugin gets no capability at all.
//!
//! Owns parsing and the grant check; the sandbox applies the granted set to each store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::PluginError;
use crate::host::PluginKind;

/// Longest `version` a manifest may declare (semver with pre-release and build metadata fits easily).
const MAX_VERSION: usize = 64;

/// What a plugin may reach outside its sandbox. Empty (the default) is nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The plugin's stderr goes to the host's stderr.
    pub stderr: bool,
    /// The plugin reads the real wall and monotonic clocks. Without it both clocks stand still at zero (the Unix
    /// epoch), so a decision depends only on what the host passes in.
    pub clocks: bool,
    /// These environment variables, with the host's values (unset ones are left out).
    pub env: Vec<String>,
    /// These host directories, read-only, at the same path inside the plugin.
    pub read_dirs: Vec<PathBuf>,
}

impl Capabilities {
    pub fn is_empty(&self) -> bool {
        *self == Capabilities::default()
    }

    /// The requested capabilities `grant` does not cover, as config-style names (`stderr`, `env:TZ`,
    /// `read-dirs:/var/log`).
    pub fn not_covered_by(&self, grant: &Capabilities) -> Vec<String> {
        let granted = grant.names();
        self.names().into_iter().filter(|name| !granted.contains(name)).collect()
    }

    /// Every capability in the set, by its config-style name (`stderr`, `clocks`, `env:TZ`, `read-dirs:/var/log`).
    pub fn names(&self) -> Vec<String> {
        let mut names = Vec::new();
        if self.stderr {
            names.push("stderr".to_owned());
        }
        if self.clocks {
            names.push("clocks".to_owned());
        }
        names.extend(self.env.iter().map(|v| format!("env:{v}")));
        names.extend(self.read_dirs.iter().map(|d| format!("read-dirs:{}", d.display())));
        names
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    pub version: Option<String>,
    /// Defaults under each binding's config (the binding's keys win).
    pub config: Vec<(String, String)>,
    pub capabilities: Capabilities,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct WireManifest {
    name: Option<String>,
    kind: Option<String>,
    version: Option<String>,
    #[serde(default)]
    config: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    capabilities: WireCapabilities,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct WireCapabilities {
    #[serde(default)]
    stderr: bool,
    #[serde(default)]
    clocks: bool,
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    read_dirs: Vec<PathBuf>,
}

/// The manifest path of a plugin file: `plugins/x.wasm` → `plugins/x.manifest.yaml`.
pub(crate) fn manifest_path(wasm: &Path) -> PathBuf {
    wasm.with_extension("manifest.yaml")
}

/// Reads the manifest beside `wasm`, if there is one, and checks it against the plugin's name and detected kind.
pub(crate) fn read(wasm: &Path, name: &str, kind: PluginKind) -> Result<Manifest, PluginError> {
    let path = manifest_path(wasm);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Manifest::default()),
        Err(e) => return Err(PluginError::Manifest { path, reason: format!("cannot read: {e}") }),
    };
    let bad = |reason: String| PluginError::Manifest { path: path.clone(), reason };
    let wire: WireManifest = serde_yaml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if let Some(declared) = wire.name.as_deref()
        && declared != name
    {
        return Err(bad(format!("names the plugin `{declared}`, but the file is `{name}.wasm`")));
    }
    if let Some(declared) = wire.kind.as_deref()
        && declared != kind.as_str()
    {
        return Err(bad(format!("declares kind `{declared}`, but the component implements `{kind}`")));
    }
    let mut config = Vec::new();
    for (key, value) in wire.config {
        let value = match value {
            serde_yaml::Value::String(s) => s,
            serde_yaml::Value::Number(n) => n.to_string(),
            serde_yaml::Value::Bool(b) => b.to_string(),
            other => return Err(bad(format!("config key `{key}`: expected a scalar, got {other:?}"))),
        };
        config.push((key, value));
    }
    // The version is shown to the operator (`aegis-host plugin list`) as the plugin's author wrote it.
    if let Some(version) = wire.version.as_deref()
        && (version.is_empty() || version.len() > MAX_VERSION || version.contains(char::is_control))
    {
        return Err(bad(format!("version {version:?}: expected 1 to {MAX_VERSION} characters, no control characters")));
    }
    if let Some(dir) = wire.capabilities.read_dirs.iter().find(|d| !d.is_absolute()) {
        return Err(bad(format!("capabilities.read-dirs: `{}` is not an absolute path", dir.display())));
    }
    let capabilities = Capabilities {
        stderr: wire.capabilities.stderr,
        clocks: wire.capabilities.clocks,
        env: wire.capabilities.env,
        read_dirs: wire.capabilities.read_dirs,
    };
    Ok(Manifest { version: wire.version, config, capabilities })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(text: &str) -> Result<Manifest, PluginError> {
        let dir = tempfile::tempdir().unwrap();
        let wasm = dir.path().join("p.wasm");
        std::fs::write(manifest_path(&wasm), text).unwrap();
        read(&wasm, "p", PluginKind::LogRule)
    }

    #[test]
    fn parses_a_full_manifest() {
        let m = manifest(
            "name: p\nkind: log-rule\nversion: 1.2.0\nconfig: {n: 3, on: true, s: x}\n\
             capabilities: {stderr: true, clocks: true, env: [TZ], read-dirs: [/var/log]}\n",
        )
        .unwrap();
        assert_eq!(m.version.as_deref(), Some("1.2.0"));
        assert_eq!(m.config, [("n".into(), "3".into()), ("on".into(), "true".into()), ("s".into(), "x".into())]);
        assert_eq!(
            m.capabilities,
            Capabilities {
                stderr: true,
                clocks: true,
                env: vec!["TZ".into()],
                read_dirs: vec![PathBuf::from("/var/log")]
            }
        );
    }

    #[test]
    fn mismatches_and_typos_are_errors_naming_the_file() {
        for (text, needle) in [
            ("kind: trip-predicate\n", "implements `log-rule`"),
            ("name: q\n", "`q`"),
            ("capabilites: {}\n", "capabilites"),
            ("capabilities: {read-dirs: [rel]}\n", "absolute"),
            ("config: {a: [1]}\n", "`a`"),
            ("version: \"1.0\\n\\e[2J\"\n", "version"),
            ("version: \"\"\n", "version"),
        ] {
            let err = manifest(text).unwrap_err().to_string();
            assert!(err.contains("p.manifest.yaml") && err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn grants_cover_requests_item_by_item() {
        let want = Capabilities {
            stderr: true,
            clocks: true,
            env: vec!["A".into(), "B".into()],
            read_dirs: vec!["/d".into()],
        };
        let grant = Capabilities { env: vec!["A".into()], ..Capabilities::default() };
        assert_eq!(want.not_covered_by(&grant), ["stderr", "clocks", "env:B", "read-dirs:/d"]);
        assert!(want.not_covered_by(&want).is_empty());
    }
}
