//! The `cluster:` section: several aegis-host replicas sharing one Redis act as one supervisor. Without the section
//! nothing changes (a single node on its SQLite file). Wire struct and its validation into [`ClusterConfig`]; the
//! cluster itself is [`crate::cluster`].
//!
//! ```yaml
//! cluster:
//!   redis: rediss://aegis@redis.internal:6380/0   # redis:// or rediss:// (TLS)
//!   tls: {caFile: /etc/aegis/redis-ca.pem}        # a private CA for rediss://
//!   node: web-1                                   # default: hostname-pid
//!   leaseTtl: 10s                                 # a dead replica's services move after this
//!   keyPrefix: "aegis:"                           # every key this cluster writes starts with it
//! ```
//!
//! The password goes in the URL or in `AEGIS_REDIS_PASSWORD` (which wins); it is never logged or shown.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Validator, opt_duration};

/// Default `leaseTtl`.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
/// Default `keyPrefix`.
pub const DEFAULT_KEY_PREFIX: &str = "aegis:";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ClusterWire {
    redis: String,
    #[serde(default)]
    tls: Option<TlsWire>,
    #[serde(default)]
    node: Option<String>,
    #[serde(default, deserialize_with = "opt_duration")]
    lease_ttl: Option<Duration>,
    #[serde(default)]
    key_prefix: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TlsWire {
    ca_file: PathBuf,
}

/// The `cluster:` section, validated. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `redis://` or `rediss://`, the password (from the URL or `AEGIS_REDIS_PASSWORD`) included.
    pub redis_url: String,
    /// A CA certificate (PEM) to trust for `rediss://`; `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// This replica's name among the members.
    pub node: String,
    /// A member whose heartbeats stop is gone after this; its services move.
    pub lease_ttl: Duration,
    pub key_prefix: String,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("redis_url", &crate::redact::redact_url(&self.redis_url))
            .field("ca_file", &self.ca_file)
            .field("node", &self.node)
            .field("lease_ttl", &self.lease_ttl)
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

impl ClusterConfig {
    /// The URL as it may be shown: the password masked.
    pub fn shown_url(&self) -> String {
        crate::redact::redact_url(&self.redis_url).into_owned()
    }

    /// Whether the connection uses TLS.
    pub fn tls(&self) -> bool {
        self.redis_url.starts_with("rediss://")
    }
}

/// The default node name: the host's name and this process' id, unique among replicas on one machine.
fn default_node() -> String {
    let host = rustix::system::uname().nodename().to_string_lossy().into_owned();
    format!("{host}-{}", std::process::id())
}

impl Validator<'_> {
    pub(super) fn cluster(
        &self,
        wire: Option<ClusterWire>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<ClusterConfig>, ConfigError> {
        let Some(w) = wire else { return Ok(None) };
        let shown = crate::redact::redact_url(&w.redis);
        let mut url = reqwest::Url::parse(&w.redis)
            .map_err(|e| self.invalid("cluster.redis", format!("{shown:?} is not a URL: {e}")))?;
        match url.scheme() {
            "redis" | "rediss" => {}
            other => {
                return Err(
                    self.invalid("cluster.redis", format!("{shown:?}: scheme `{other}` is not redis or rediss"))
                );
            }
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(self.invalid("cluster.redis", format!("{shown:?} names no host")));
        }
        if let Some(password) = env("AEGIS_REDIS_PASSWORD").filter(|p| !p.is_empty())
            && url.set_password(Some(&password)).is_err()
        {
            return Err(self.invalid("cluster.redis", format!("{shown:?} cannot carry a password")));
        }
        let ca_file = match w.tls {
            None => None,
            Some(_) if url.scheme() == "redis" => {
                return Err(self.invalid("cluster.tls", "TLS settings need a rediss:// URL"));
            }
            Some(t) => {
                if !t.ca_file.is_file() {
                    return Err(self.invalid("cluster.tls.caFile", format!("{} is not a file", t.ca_file.display())));
                }
                Some(t.ca_file)
            }
        };
        let node = match w.node {
            None => default_node(),
            Some(n) if n.is_empty() || n.len() > 128 || n.chars().any(|c| c.is_control() || c.is_whitespace()) => {
                return Err(self.invalid("cluster.node", format!("{n:?}: 1 to 128 characters, no spaces")));
            }
            Some(n) => n,
        };
        let lease_ttl = w.lease_ttl.unwrap_or(DEFAULT_LEASE_TTL);
        if lease_ttl < Duration::from_secs(1) || lease_ttl > Duration::from_secs(3600) {
            return Err(self.invalid("cluster.leaseTtl", "must be between 1s and 1h"));
        }
        let key_prefix = w.key_prefix.unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_owned());
        if key_prefix.len() > 64 {
            return Err(self.invalid("cluster.keyPrefix", "at most 64 bytes"));
        }
        Ok(Some(ClusterConfig { redis_url: url.to_string(), ca_file, node, lease_ttl, key_prefix }))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn parse(cluster: &str, env: &[(&str, &str)]) -> Result<Config, String> {
        let text = format!("{cluster}\nservices: []\n");
        let lookup = |key: &str| env.iter().find(|(k, _)| *k == key).map(|(_, v)| (*v).to_owned());
        Config::from_yaml_with_env(Path::new("c.yaml"), &text, &lookup).map_err(|e| e.to_string())
    }

    #[test]
    fn the_cluster_section_has_defaults_and_the_password_stays_hidden() {
        let c = parse("cluster: {redis: 'redis://127.0.0.1:6379'}", &[]).expect("parses").cluster.expect("cluster");
        assert_eq!((c.lease_ttl, c.key_prefix.as_str(), c.tls()), (DEFAULT_LEASE_TTL, "aegis:", false));
        assert!(c.node.ends_with(&format!("-{}", std::process::id())), "{}", c.node);
        let c = parse(
            "cluster: {redis: 'rediss://:in-url@h:6380', node: n1, leaseTtl: 3s}",
            &[("AEGIS_REDIS_PASSWORD", "env-pw")],
        )
        .expect("parses")
        .cluster
        .expect("cluster");
        assert_eq!((c.node.as_str(), c.lease_ttl, c.tls()), ("n1", Duration::from_secs(3), true));
        assert!(c.redis_url.contains(":env-pw@"), "the variable wins");
        let shown = format!("{c:?} {}", c.shown_url());
        assert!(!shown.contains("env-pw") && shown.contains("***"), "{shown}");
        assert_eq!(parse("", &[]).expect("parses").cluster, None, "no section: a single node");
    }

    #[test]
    fn a_bad_cluster_section_names_its_field() {
        for (yaml, field) in [
            ("cluster: {redis: 'http://h:6379'}", "cluster.redis"),
            ("cluster: {redis: 'not a url'}", "cluster.redis"),
            ("cluster: {redis: 'redis://h', tls: {caFile: /etc/hostname}}", "cluster.tls"),
            ("cluster: {redis: 'rediss://h', tls: {caFile: /no/such/ca.pem}}", "cluster.tls.caFile"),
            ("cluster: {redis: 'redis://h', node: 'two words'}", "cluster.node"),
            ("cluster: {redis: 'redis://h', leaseTtl: 100ms}", "cluster.leaseTtl"),
        ] {
            let e = parse(yaml, &[]).expect_err(yaml);
            assert!(e.contains(field), "{yaml}: {e}");
            assert!(e.starts_with("c.yaml"), "{e}");
        }
        let e = parse("cluster: {redis: 'redis://h', lease: 3s}", &[]).expect_err("unknown field");
        assert!(e.contains("c.yaml:1:") && e.contains("lease"), "{e}");
    }

    #[test]
    fn the_example_cluster_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/cluster");
        for node in ["a", "b", "c"] {
            let c = Config::load(&dir.join(format!("replica-{node}.yaml"))).expect("parses");
            let cluster = c.cluster.expect("cluster");
            assert_eq!(cluster.node, format!("replica-{node}"));
            assert_eq!(c.services.len(), 3);
        }
    }
}
