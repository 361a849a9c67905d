//! Connecting to Redis: `redis://` or `rediss://` (TLS through rustls, with `tls.caFile` as the only trusted root
//! when given), a connection manager that reconnects by itself, bounded connect and response times. Errors are
//! worded for an operator: a wrong password, a TLS failure and an unreachable server say so.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::ClusterConfig;

/// Connects (one attempt, bounded by `timeout`).
pub(super) async fn connect(config: &ClusterConfig, timeout: Duration) -> Result<ConnectionManager, String> {
    let client = match &config.ca_file {
        Some(ca) => {
            let root_cert =
                std::fs::read(ca).map_err(|e| format!("cannot read cluster.tls.caFile {}: {e}", ca.display()))?;
            redis::Client::build_with_tls(
                config.redis_url.as_str(),
                redis::TlsCertificates { client_tls: None, root_cert: Some(root_cert) },
            )
        }
        None => redis::Client::open(config.redis_url.as_str()),
    }
    .map_err(|e| describe(&e))?;
    let settings = ConnectionManagerConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(timeout)
        .set_number_of_retries(1)
        .set_max_delay(1000);
    match tokio::time::timeout(timeout * 2, ConnectionManager::new_with_config(client, settings)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(describe(&e)),
        Err(_) => Err("connecting timed out".to_owned()),
    }
}

/// A Redis error as an operator should read it.
pub(super) fn describe(e: &redis::RedisError) -> String {
    let text = e.to_string();
    let lower = text.to_lowercase();
    if e.kind() == redis::ErrorKind::AuthenticationFailed
        || lower.contains("wrongpass")
        || lower.contains("noauth")
        || lower.contains("invalid password")
    {
        return format!(
            "Redis refused the credentials (check the password in cluster.redis or AEGIS_REDIS_PASSWORD): {text}"
        );
    }
    if lower.contains("certificate")
        || lower.contains("tls")
        || lower.contains("handshake")
        || lower.contains("unknownissuer")
    {
        return format!("TLS with Redis failed (check cluster.tls.caFile and the server's certificate): {text}");
    }
    if lower.contains("aegisnode") {
        return text.replace("AEGISNODE ", "");
    }
    text
}
